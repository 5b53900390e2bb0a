"""A progress bar for long runs: tqdm when it is installed, silence otherwise.

tqdm is an optional dependency (``pip install torch-mbd[progress]``; it comes with the
``examples`` and ``all`` extras): the core needs only torch and numpy.

When standard error is not a terminal (a log file, a pipe, CI), a redraw is a whole new line of
the log, so the bar redraws at most once every :data:`LOG_INTERVAL` seconds there: a long run
still shows it is alive, a short one writes a line or two instead of one per step.
"""

from __future__ import annotations

import functools
import sys
import warnings

_warned = False
LOG_INTERVAL = 30.0  # seconds between redraws when stderr is not a terminal


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over ``total`` steps, or a silent stand-in when disabled or tqdm is missing."""
    global _warned
    if not enabled:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not _warned:
            warnings.warn("progress=True needs tqdm: pip install 'torch-mbd[progress]'", stacklevel=3)
            _warned = True
        return _Silent()
    # a notebook's widget redraws in place: a log's rate is not for it
    log = not tqdm.__module__.startswith("tqdm.notebook") and not _is_terminal(sys.stderr)
    bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, **({"mininterval": LOG_INTERVAL} if log else {}))
    if log:  # set_postfix redraws at once by default: in a log it waits for the next timed redraw
        bar.set_postfix = functools.partial(bar.set_postfix, refresh=False)
    return bar


def _is_terminal(stream) -> bool:
    """Whether ``stream`` (e.g. ``sys.stderr``, possibly ``None`` or replaced) is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # None, a closed file, an object without isatty
        return False
