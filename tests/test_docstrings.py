"""The examples in nptl's docstrings run as tests (doctest): an example that no longer matches
the code fails here.  Every module of nptl whose source holds a ``>>>`` example is collected, so
a new example cannot be left unrun."""
import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "nptl"
MODULES = sorted(
    ".".join(("nptl",) + p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in ROOT.rglob("*.py") if ">>>" in p.read_text(encoding="utf-8")
)


def test_the_public_examples_are_collected():
    for module in ("nptl.ops", "nptl.gradient_check", "nptl.graph", "nptl.train", "nptl.settings",
                   "nptl.kernels.reference", "nptl.testing.strategies"):
        assert module in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, globs={"np": np, **vars(module)}) if t.examples]
    assert tests, f"{name}: no examples found"
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (output above)"
