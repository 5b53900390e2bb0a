"""The flag table of ``torch-mbd plan`` in ``docs/trajopt.md``, generated from the argument parser.

The table sits between ``<!-- cli-flags:start -->`` and ``<!-- cli-flags:end -->``; its rows
are the parser's arguments in order, each with its metavar or choices and its help text (which
states the default), so the page says what ``torch-mbd plan --help`` says. ``tests/test_docs_api.py``
fails when the page and the parser differ; then run::

    python tools/cli_table.py            # rewrite the table in docs/trajopt.md
    python tools/cli_table.py --print    # print it only
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGE = ROOT / "docs" / "trajopt.md"
START, END = "<!-- cli-flags:start -->", "<!-- cli-flags:end -->"


def _plan_parser() -> argparse.ArgumentParser:
    from torch_mbd.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["plan"]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def flag_table() -> str:
    """The markdown table of ``torch-mbd plan``'s arguments: ``| flag | meaning (default) |``."""
    rows = ["| flag | meaning (default) |", "|---|---|"]
    for action in _plan_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            flag = action.option_strings[-1]
            if action.choices is not None:
                flag += " " + "|".join(str(c) for c in action.choices)
            elif action.nargs != 0:
                flag += " " + (action.metavar or action.dest.upper())
        else:
            flag = action.metavar or action.dest
        rows.append(f"| `{_cell(flag)}` | {_cell(action.help or '')} |")
    return "\n".join(rows)


def page_table(text: str | None = None) -> str:
    """The table currently between the markers of ``docs/trajopt.md``.

    Raises:
        ValueError: when the markers are missing.
    """
    text = PAGE.read_text(encoding="utf-8") if text is None else text
    match = re.search(re.escape(START) + r"(.*?)" + re.escape(END), text, re.DOTALL)
    if match is None:
        raise ValueError(f"{PAGE} has no {START} ... {END} section")
    return match.group(1).strip("\n")


def write_table() -> Path:
    """Replace the table between the markers of ``docs/trajopt.md`` with :func:`flag_table`."""
    text = PAGE.read_text(encoding="utf-8")
    page_table(text)  # the markers exist
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    PAGE.write_text(pattern.sub(lambda _: f"{START}\n{flag_table()}\n{END}", text), encoding="utf-8")
    return PAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table; leave docs/ alone")
    args = parser.parse_args(argv)
    if args.print:
        print(flag_table())
    else:
        print(f"wrote {write_table()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
