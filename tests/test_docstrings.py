"""Every docstring example runs and shows what it says (imported under the public names)."""

import doctest
import importlib
import pkgutil

import pytest

import foscat_core


def _modules():
    names = []
    for info in pkgutil.walk_packages(foscat_core.__path__, "foscat_core."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    for pkg in ("foscat_core.backends", "foscat_core.nn", "foscat_core.synthesis"):
        module = importlib.import_module(pkg)
        names += [pkg] + [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    if name.startswith("foscat_core.plot") and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is an optional extra")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
