"""The API page and the generated tables: cross-references render, the site builds strictly, the CLI table is the parser's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import cli_table
import docstring_roles


def test_no_sphinx_role_is_left_in_the_docstrings():
    """mkdocstrings renders markdown: ``:func:`x``` would show literally (python tools/docstring_roles.py converts them)."""
    left = docstring_roles.roles_left()
    assert not left, "Sphinx roles render literally on the API page; run python tools/docstring_roles.py:\n" + "\n".join(left)


def test_the_role_finder_finds_roles(tmp_path):
    line = "See :func:`~torch_mbd.plan`, :class:`Task`, :meth:`MBDOptimizer.step <torch_mbd.MBDOptimizer.step>`."
    assert [m.group("kind") for m in docstring_roles.ROLE.finditer(line)] == ["func", "class", "meth"]
    inventory = {"torch_mbd.plan", "torch_mbd.MBDOptimizer.step", "dynamics.tasks.Task"}
    converted = docstring_roles.ROLE.sub(lambda m: docstring_roles.replacement(m, "dynamics.tasks", inventory), line)
    assert converted == (
        "See [`plan`][torch_mbd.plan], [`Task`][dynamics.tasks.Task], [`MBDOptimizer.step`][torch_mbd.MBDOptimizer.step]."
    )
    # a target the site does not document becomes code, not a link that fails the strict build
    assert docstring_roles.ROLE.sub(lambda m: docstring_roles.replacement(m, "x", inventory), ":func:`_private`") == "`_private`"


def test_the_cli_flag_table_in_trajopt_md_is_the_parsers():
    assert cli_table.page_table() == cli_table.flag_table(), (
        "docs/trajopt.md's flag table differs from torch-mbd plan's parser; run python tools/cli_table.py"
    )


def test_the_flag_table_lists_every_option_of_the_parser():
    table = cli_table.flag_table()
    for flag in ("--temperature T", "--preset default\\|paper", "--knots K", "--backend mujoco\\|warp\\|mjx", "--out PATH"):
        assert f"| `{flag}` |" in table, flag
    assert "'auto'" in table  # the temperature's default is the preset's 'auto', not 0.1


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed: pip install -e '.[docs]'")
def test_mkdocs_build_strict_passes(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert ":func:" not in api and ":class:" not in api and ":meth:" not in api
    assert 'href="#torch_mbd.MBDOptimizer' in api  # cross-references became links
