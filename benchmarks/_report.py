"""Write benchmark tables and figures into docs/results.md, one marked section per benchmark.

Each benchmark owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in
``docs/results.md`` and replaces it on every run, so several benchmarks share one page
without clobbering each other. Figures go to ``docs/figures/``.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"


def machine() -> str:
    """A one-line description of where this ran: CPU model, cores, GPU when used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, markdown: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the section ``name`` of ``path`` with ``markdown``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "# Results\n\nEvery table and figure here is written by a script in `benchmarks/`.\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def figure_path(name: str) -> Path:
    """``docs/figures/NAME``, with the folder created."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    return FIGURES / name
