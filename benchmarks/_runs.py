"""The resumable run store and grid loop the long benchmarks share (trajopt, sample efficiency).

A benchmark's runs live in one JSON file, a list of records (dicts), each found by its key
(e.g. task, method, seed). :class:`RunStore` loads the file and rewrites it atomically after
every new run, so an interrupted grid loses at most the run in progress. :func:`run_grid` walks
a grid in order and runs only what the store lacks: a run whose stored record has the same
settings is skipped, so a later invocation resumes where the last one stopped.

What differs between benchmarks (what a run is, its settings, how a model is built) comes in as
small callables; the bookkeeping (which model to build, skipping, warm-up, saving, progress) is
written once here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable

from torch_mbd.progress import progress_bar


def load_runs(path: Path) -> list[dict]:
    """The records stored in ``path``; ``[]`` when it does not exist yet."""
    return json.loads(path.read_text()) if path.exists() else []


def save_runs(path: Path, records: list[dict]) -> None:
    """Write ``records`` atomically (a crash mid-write keeps the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(records, indent=0))
    tmp.replace(path)


def same_settings(record: dict, settings: dict) -> bool:
    """Whether a stored ``record`` was run with ``settings``: every entry of ``settings`` equals the record's."""
    return all(record.get(name) == value for name, value in settings.items())


class RunStore:
    """The records of one benchmark, keyed, saved to ``path`` after every change.

    Args:
        path: the JSON file (a list of records).
        key: ``key(record)``, the tuple that identifies a run (one record per key).
        fresh: start empty instead of loading ``path``; the first :meth:`put` replaces the file.
    """

    def __init__(self, path: Path, key: Callable[[dict], tuple], fresh: bool = False):
        self.path = Path(path)
        self.key = key
        self.records: list[dict] = [] if fresh else load_runs(self.path)
        self._index = {key(r): r for r in self.records}

    def get(self, key: tuple) -> dict | None:
        """The stored record of ``key``, or ``None``."""
        return self._index.get(key)

    def put(self, record: dict) -> None:
        """Store ``record`` in place of any record of its key (it goes last) and save the file."""
        key = self.key(record)
        self.records = [r for r in self.records if self.key(r) != key] + [record]
        self._index[key] = record
        save_runs(self.path, self.records)


@dataclass(frozen=True)
class GridRun:
    """One run of a grid.

    Attributes:
        key: the key of its record in the store.
        model: which model it runs on (e.g. ``(task, seed)``), built once and shared by the runs
            that name it; ``model[0]`` is the task: the models of one task are kept until the
            grid moves on to the next task, and each task is warmed up once.
    """

    key: tuple
    model: tuple[Hashable, ...]


def run_grid(
    store: RunStore,
    runs: list[GridRun],
    *,
    build: Callable[[tuple], object],
    settings: Callable[[GridRun, object], dict],
    run: Callable[[GridRun, object, dict], dict],
    warm_up: Callable[[GridRun, object], None],
    rerun: bool = False,
    copy: Callable[[GridRun, dict], dict | None] | None = None,
    title: str = "runs",
) -> int:
    """Run, in order, every run of ``runs`` that ``store`` does not hold with the same settings.

    For each run: its model (``build(run.model)``, once per model key) and its settings
    (``settings(run, model)``, a dict of what a stored record must equal to stand for it). A
    run stored with those settings is skipped; otherwise ``copy(run, settings)`` may return a
    record to store instead of running (an equal run stored under another key), else
    ``warm_up(run, model)`` is called once per task before its first real run and
    ``run(run, model, settings)`` returns the new record. Every new record is stored (and the file
    saved) at once.

    Args:
        store: the runs file.
        runs: the grid, in run order.
        build: ``build(model_key) -> model`` (anything the other callables need).
        settings: ``settings(run, model) -> dict``.
        run: ``run(run, model, settings) -> record`` (it prints its own progress line).
        warm_up: ``warm_up(run, model)``, untimed work before a task's first run.
        rerun: run every run even when it is stored with the same settings (and copy nothing).
        copy: ``copy(run, settings) -> record | None``; ``None`` copies nothing.
        title: the progress bar's label.

    Returns:
        How many runs were not run: skipped because stored, or copied.
    """
    skipped, warmed, models = 0, set(), {}
    with progress_bar(len(runs), title) as bar:
        for item in runs:
            if item.model not in models:
                if models and next(iter(models))[0] != item.model[0]:
                    models.clear()  # one task's models at a time
                models[item.model] = build(item.model)
            model = models[item.model]
            cfg = settings(item, model)
            old = store.get(item.key)
            if not rerun and old is not None and same_settings(old, cfg):
                skipped += 1
                bar.update()
                continue
            record = None if rerun or copy is None else copy(item, cfg)
            if record is not None:
                skipped += 1
            else:
                if item.model[0] not in warmed:
                    warm_up(item, model)
                    warmed.add(item.model[0])
                record = run(item, model, cfg)
            store.put(record)
            bar.update()
    return skipped


__all__ = ["GridRun", "RunStore", "load_runs", "run_grid", "same_settings", "save_runs"]
