"""The architecture's one arrow: torch_mbd depends on torch and numpy only and never imports dynamics."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_imports_nothing_heavy():
    code = (
        "import sys, torch\n"
        "before = set(sys.modules)\n"
        "import torch_mbd\n"
        "new = set(sys.modules) - before\n"
        "heavy = ('dynamics', 'mujoco', 'mujoco_warp', 'warp', 'jax', 'matplotlib', 'cma', 'tqdm', 'gymnasium')\n"
        "print(','.join(m for m in heavy if m in new))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_core_source_never_imports_dynamics():
    for path in (ROOT / "torch_mbd").glob("*.py"):
        if path.name == "cli.py":  # the application layer composes both
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "dynamics" or n.startswith("dynamics.") for n in names), path


def test_install_requires_is_torch_and_numpy():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            reqs = [elt.value.split(">")[0].split("=")[0].split("<")[0] for elt in node.value.elts]
            assert sorted(reqs) == ["numpy", "torch"]
            return
    raise AssertionError("setup.py has no install_requires")


def test_license_is_mit_and_ships_in_the_wheel_and_the_sdist(tmp_path):
    """LICENSE says MIT, as setup.py declares, and both distributions carry it."""
    import shutil
    import tarfile
    import zipfile

    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("torch_mbd", "dynamics"):  # a copy, so that the build leaves nothing in the checkout
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "from setuptools import build_meta\n"
        "wheel = build_meta.build_wheel('dist')\n"
        "sdist = build_meta.build_sdist('dist')\n"
        "print('BUILT', wheel, sdist)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel_name, sdist_name = out.stdout.split("BUILT ")[-1].split()
    with zipfile.ZipFile(tmp_path / "dist" / wheel_name) as wheel:
        names = wheel.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1 and wheel.read(licenses[0]).decode() == text
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode().splitlines()
    assert "License-File: LICENSE" in metadata and any(line.startswith("License") and "MIT" in line for line in metadata)
    with tarfile.open(tmp_path / "dist" / sdist_name) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("/LICENSE") and m.name.count("/") == 1)
        assert sdist.extractfile(member).read().decode() == text


def _bash_blocks(text: str) -> list[list[str]]:
    """The command lines (comments and blank lines dropped) of each ```bash block of ``text``."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.strip() == "```bash":
            current = []
        elif line.strip() == "```" and current is not None:
            blocks.append(current)
            current = None
        elif current is not None and line.split("#")[0].strip():
            current.append(line.split("  #")[0].strip())
    return blocks


def _setup_extras() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    extras = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            extras |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            extras.add(node.slice.value)
    return extras


def test_readme_quickstart_is_a_venv_the_cpu_torch_and_two_commands():
    text = (ROOT / "README.md").read_text()
    quickstart = text[text.index("## Quickstart") : text.index("\n## ", text.index("## Quickstart") + 1)]
    setup, commands = _bash_blocks(quickstart)[:2]
    assert len(setup) == 2 and setup[0].startswith("python3 -m venv .venv")
    # the CPU wheel: an unpinned torch from PyPI pulls gigabytes of CUDA packages
    assert setup[1] == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert len(commands) == 2
    assert commands[0].startswith('pip install -e ".[examples]" && torch-mbd plan car2d')
    assert commands[1] == 'pip install -e ".[test]" && pytest'


def test_every_extra_the_readme_names_exists():
    import re

    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r'\.\[([a-z,]+)\]', text))
    table = set(re.findall(r"^\| `([a-z]+)` \|", text, flags=re.MULTILINE))
    extras = _setup_extras()
    for group in named:
        assert set(group.split(",")) <= extras, group
    assert table and table <= extras and "mnist" in table
