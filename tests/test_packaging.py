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
