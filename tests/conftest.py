"""pytest configuration: make tests/zoo.py importable, shared fixtures.

pyproject sets --import-mode=importlib, so the source folder is not on
sys.path and the installed klfast is tested; only this folder is added, for
the helper module ``zoo``.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip themselves
    pass
else:
    # Small, fast property runs; no deadline (the first call may compile nothing
    # but a cold cache or a loaded CI machine must not fail a test).
    settings.register_profile(
        "klfast", max_examples=60, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("klfast")


# The numeric tests run at every instruction-set level this CPU supports
# (modules opt in with ``pytestmark = pytest.mark.usefixtures("isa")``): every
# code path must give the documented results.
_kernels = pytest.importorskip("klfast._kernels")
ISAS = _kernels.supported_isas()


@pytest.fixture(params=ISAS, scope="module")
def isa(request):
    before = _kernels.get_isa()
    _kernels.set_isa(request.param)
    yield request.param
    _kernels.set_isa(before)
