"""Rewrite Sphinx cross-reference roles in the docstrings as mkdocstrings (mkdocs-autorefs) cross-references.

The API page (``docs/api.md``) renders docstrings with mkdocstrings' Google style, which reads
markdown: a Sphinx role such as ``:func:`~torch_mbd.plan``` shows up literally. This script
replaces every role in ``torch_mbd/`` and ``dynamics/``:

* by ``[`name`][full.path]`` when ``full.path`` is an object the built site documents (read from
  the site's ``objects.inv``), so it renders as a link;
* by ``` `name` ``` (code, no link) otherwise, e.g. a private helper or a module the API page
  does not show (a link to it would fail ``mkdocs build --strict``).

``name`` is what Sphinx would display: the target as written, its last part with ``~``, or the
title of ``:role:`title <target>```. A target without a module is looked up in the module of
the file it is written in (``plan`` in ``torch_mbd/plan.py`` is ``torch_mbd.plan.plan``), then as
a member of any documented class of that module (``:meth:`step``` in ``torch_mbd/optim.py``).

Run from the repository root (it builds the site first to read the inventory)::

    python tools/docstring_roles.py           # rewrite the files, print what changed
    python tools/docstring_roles.py --check   # exit 1 if any role is left (what tests/test_docs_api.py asserts)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch_mbd", "dynamics")
ROLE = re.compile(r":(?:py:)?(?P<kind>func|class|meth|mod|attr|data|exc|obj):`(?P<text>[^`]+)`")


def source_files() -> list[Path]:
    """The ``.py`` files of the packages whose docstrings the API page renders."""
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def roles_left() -> list[str]:
    """``path:line: role`` for every Sphinx role still in the packages' sources."""
    found = []
    for path in source_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {m.group(0)}" for m in ROLE.finditer(line)]
    return found


def read_inventory(path: Path) -> set[str]:
    """The object names of a Sphinx ``objects.inv`` (version 2) as mkdocstrings writes it."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):  # four header lines, then the zlib stream
        header_end = data.index(b"\n", header_end) + 1
    body = zlib.decompress(data[header_end:]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


def build_inventory() -> set[str]:
    """Build the site into a temporary folder (``mkdocs build``) and read its inventory."""
    with tempfile.TemporaryDirectory() as site:
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-d", site], cwd=ROOT, check=True)
        return read_inventory(Path(site) / "objects.inv")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(target: str, module: str, inventory: set[str]) -> str | None:
    """The documented full name ``target`` refers to from ``module``, or ``None``."""
    target = target.lstrip(".")
    candidates = [target, f"{module}.{target}"]
    candidates += sorted(name for name in inventory if name.startswith(module + ".") and name.endswith("." + target))
    for candidate in candidates:
        if candidate in inventory:
            return candidate
    return None


def replacement(match: re.Match, module: str, inventory: set[str]) -> str:
    text = match.group("text").strip()
    titled = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", text)
    if titled:
        shown, target = titled.group("title"), titled.group("target")
    elif text.startswith("~"):
        target = text[1:]
        shown = target.rsplit(".", 1)[-1]
    else:
        shown = target = text
    full = resolve(target, module, inventory)
    return f"[`{shown}`][{full}]" if full else f"`{shown}`"


def convert(inventory: set[str]) -> int:
    """Rewrite every file with roles; return how many roles were replaced."""
    count = 0
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        module = module_of(path)
        new, n = ROLE.subn(lambda m, module=module: replacement(m, module, inventory), text)
        if n:
            path.write_text(new, encoding="utf-8")
            print(f"{path.relative_to(ROOT)}: {n} roles")
            count += n
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the roles left; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        left = roles_left()
        print("\n".join(left) or "no Sphinx roles left")
        return 1 if left else 0
    print(f"replaced {convert(build_inventory())} roles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
