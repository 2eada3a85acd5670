"""The architecture contract: frameworks live in ``backends/`` only, and the layers import downwards.

``lint-imports`` (import-linter, contracts in ``.importlinter``) runs on a copy of the package laid
out as installed (``backends/``, ``nn/``, ``synthesis/``, ``demo/`` become sub-packages of
``foscat_core``); a source search adds what an import graph cannot see: code that tests a
framework's name or reaches through a backend to its framework module.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax")
BACKEND_NAMES = ("numpy", "torch", "tensorflow", "jax")


def _installed_layout(dst):
    """Copy the sources to ``dst`` the way pyproject's package-dir maps them."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__")
    for package, src in sorted(package_dir.items(), key=lambda kv: kv[0].count(".")):
        shutil.copytree(ROOT / src, dst / package.replace(".", "/"), ignore=ignore, dirs_exist_ok=True)
    return dst


def _lint(tree):
    env = dict(os.environ, PYTHONPATH=str(tree))
    lint = shutil.which("lint-imports") or pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    return subprocess.run([lint, str(ROOT / ".importlinter"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _installed_layout(tmp_path_factory.mktemp("layout"))


def test_import_contracts_hold(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line", [
    ("nn/cnn.py", "import torch\n"),  # a framework outside backends/
    ("backends/registry.py", "from foscat_core import nn\n"),  # a backend importing a layer above it
])
def test_a_violation_breaks_the_contracts(tmp_path, module, line):
    tree = _installed_layout(tmp_path)
    target = tree / "foscat_core" / module
    target.write_text(line + target.read_text())
    result = _lint(tree)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout


_IMPORT = re.compile(rf"^\s*(?:import|from)\s+({'|'.join(FRAMEWORKS)})\b")
_NAME_TEST = re.compile(rf"""(?:==|!=|\bin\s*[(\[{{])\s*["']({'|'.join(BACKEND_NAMES)})["']""")
_REACH_THROUGH = re.compile(r"\b(?:bk|backend|fw|raw)\.(?:tf|torch|jax)\b")


def _outside_backends():
    for folder in ("foscat_core", "nn", "synthesis", "demo"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_framework_code_outside_backends():
    found = []
    for path in _outside_backends():
        for number, text in enumerate(path.read_text().splitlines(), 1):
            code = text.split("#", 1)[0]
            if code.lstrip().startswith(">>>"):
                continue  # a docstring example is user code
            for pattern in (_IMPORT, _NAME_TEST, _REACH_THROUGH):
                if pattern.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert not found, "framework code outside backends/:\n" + "\n".join(found)


def test_the_source_search_sees_what_it_looks_for():
    lines = ['import torch', 'if bk.name == "tensorflow":', 'x = bk.tf.pow(y, 3)', 'if name in ("jax", "x"):']
    assert all(any(p.search(line) for p in (_IMPORT, _NAME_TEST, _REACH_THROUGH)) for line in lines)
    assert not any(p.search("x = backend.xp.sum(y)") for p in (_IMPORT, _NAME_TEST, _REACH_THROUGH))
