"""The docs run: every ```python block of docs/*.md and README.md is executed, page by page.

The blocks of one page run in order in one namespace (a later block may use what an earlier
one defined), in a fresh temporary folder (blocks that write files write there). A block that
must not run here (it needs several processes, a GPU, or is a deliberate fragment) carries
an HTML comment on the line before its fence, invisible on the rendered page::

    <!-- docs-test: skip (why it cannot run in the tests) -->

Each such block is reported as a skipped test with its reason. A page may also hold hidden
setup code run before its first block (for fragments whose variables the prose defines)::

    <!-- docs-test: setup
    import torch
    model = torch.nn.Linear(4, 2)
    -->

Blocks that need an optional package (MuJoCo, matplotlib) skip with the package's name when it
is missing (or with the ``ImportError`` of ``dynamics`` that names the extra to install);
rendering blocks skip when no offscreen OpenGL context can be made.

The shell blocks are not run (they install packages or plan for minutes), but every
``torch-mbd ...`` command in them must parse with the command's parser and name a registered task.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.DOTALL | re.MULTILINE)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
SETUP = re.compile(r"<!--\s*docs-test:\s*setup\s*\n(?P<code>.*?)-->", re.DOTALL)
# optional packages whose absence skips a block (the package's name is the reason)
OPTIONAL = ("mujoco", "gymnasium", "mujoco_warp", "warp", "jax", "matplotlib", "PIL", "imageio", "tqdm", "cma")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # path relative to the repository root
    line: int  # line of the opening fence, 1-based
    language: str
    code: str
    skip: str | None  # the reason given in a docs-test: skip comment, or None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, in order."""
    text = path.read_text(encoding="utf-8")
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        info = match.group("info").strip()
        indent = len(match.group("indent"))
        code = "\n".join(row[indent:] for row in match.group("body").splitlines())
        found.append(Block(page, line, info.split()[0] if info else "", code, skip and skip.group("reason").strip()))
    return found


def setup_code(path: Path) -> str:
    """The page's hidden setup code (``<!-- docs-test: setup ... -->``), or ``""``."""
    return "\n".join(m.group("code") for m in SETUP.finditer(path.read_text(encoding="utf-8")))


PYTHON = [b for page in PAGES for b in blocks(page) if b.language == "python"]
RUN_PAGES = sorted({b.page for b in PYTHON if b.skip is None})
SKIPPED = [b for b in PYTHON if b.skip is not None]


def _missing_optional(err: ModuleNotFoundError) -> str | None:
    name = (err.name or "").split(".")[0]
    return name if name in OPTIONAL else None


@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_python_blocks_of_a_page_run_in_order(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__docs__"}
    setup = setup_code(ROOT / page)
    if setup:
        exec(compile(setup, f"{page}:setup", "exec"), namespace)  # noqa: S102 (running the docs is the test)
    for block in (b for b in PYTHON if b.page == page and b.skip is None):
        try:
            exec(compile(block.code, block.name, "exec"), namespace)  # noqa: S102
        except ImportError as err:  # a missing optional package, or dynamics naming the extra to install
            if isinstance(err, ModuleNotFoundError) and _missing_optional(err):
                pytest.skip(f"{block.name} needs {_missing_optional(err)}, which is not installed")
            if not isinstance(err, ModuleNotFoundError) and "pip install" in str(err):
                pytest.skip(f"{block.name}: {err}")
            raise
        except RuntimeError as err:
            if str(err).startswith("offscreen MuJoCo rendering failed"):
                pytest.skip(f"{block.name} renders, and no offscreen OpenGL context works here: {err}")
            raise


@pytest.mark.parametrize("block", SKIPPED, ids=[b.name for b in SKIPPED])
def test_blocks_marked_skip_are_reported_with_their_reason(block):
    assert len(block.skip) >= 10, f"{block.name}: give a reason a reader understands"
    pytest.skip(f"{block.name}: {block.skip}")


def test_every_python_block_is_run_or_skipped_with_a_reason():
    """The runner finds the blocks (a broken fence pattern would silently run nothing)."""
    assert len(PYTHON) >= 20 and RUN_PAGES
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert text.count("```python") == sum(b.language == "python" for b in blocks(page)), page
        for comment in re.findall(r"<!--\s*docs-test:[^\n]*", text):
            assert SKIP.search(comment + (" -->" if "-->" not in comment else "")) or "setup" in comment, (
                f"{page.name}: unknown docs-test comment {comment!r}"
            )


def test_the_parser_reads_fences_skips_and_setup(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a GPU, as the text says) -->\n"
        "```python\nimport cuda_only\n```\n\n```bash\nls\n```\n\n- item\n\n    ```python\n    y = x + 1\n    ```\n"
        "<!-- docs-test: setup\nz = 2\n-->\n"
    )
    found = blocks(page)
    assert [(b.language, b.line, b.skip) for b in found] == [
        ("python", 3, None), ("python", 8, "needs a GPU, as the text says"), ("bash", 12, None), ("python", 18, None)
    ]
    assert found[0].code == "x = 1" and found[3].code == "y = x + 1"
    assert setup_code(page).strip() == "z = 2"
    assert os.path.basename(found[0].page) == "page.md"


def shell_commands(prefix: str = "torch-mbd") -> list[tuple[str, str]]:
    """``(where, command)`` for every ``torch-mbd ...`` command in the non-Python code blocks."""
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.language == "python":
                continue
            for offset, line in enumerate(block.code.splitlines(), 1):
                for part in line.split("#", 1)[0].split("&&"):
                    part = part.strip()
                    if part.startswith(prefix + " ") or part == prefix:
                        found.append((f"{block.page}:{block.line + offset}", part))
    return found


COMMANDS = shell_commands()


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_the_torch_mbd_commands_of_the_docs_parse(where, command):
    """A ``torch-mbd`` command shown in the docs has flags the parser knows and a registered task."""
    import shlex

    import dynamics
    from torch_mbd.cli import build_parser

    try:
        args = build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as err:
        pytest.fail(f"{where}: {command!r} does not parse (exit status {err.code})")
    if args.command == "plan" and args.task != "list":
        assert args.task in dynamics.task_names(), f"{where}: unknown task {args.task!r}"


def test_the_docs_show_torch_mbd_commands():
    assert len(COMMANDS) >= 5
