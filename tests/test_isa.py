"""Runtime instruction-set dispatch: KLFAST_ISA, refusal of levels the CPU
lacks, agreement of every level, and a guard that the hot loops stay
vectorised (a refactor that loses the vector code fails here)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import klfast
from klfast import _kernels


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    # cwd away from the source folder, so the installed klfast is imported
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120, cwd=tempfile.gettempdir())


def test_levels_and_default_choice():
    assert _kernels.supported_isas()[0] == "baseline"
    assert set(_kernels.supported_isas()) <= set(_kernels.LEVELS)
    # with no KLFAST_ISA the best supported level is in use
    result = run_python("import klfast._kernels as k; print(k.get_isa())", KLFAST_ISA="")
    assert result.stdout.strip() == _kernels.supported_isas()[-1], result.stderr


@pytest.mark.parametrize("level", _kernels.supported_isas())
def test_klfast_isa_forces_a_level(level):
    result = run_python("import klfast; klfast.show_config()", KLFAST_ISA=level)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"kernels in use:\s*{level}\b", result.stdout), result.stdout


def test_klfast_isa_unknown_level_is_a_clear_error():
    result = run_python("import klfast", KLFAST_ISA="sse9")
    assert result.returncode != 0
    assert "KLFAST_ISA" in result.stderr and "sse9" in result.stderr


def test_a_level_the_cpu_lacks_is_refused(monkeypatch):
    # pretend to be an old CPU that runs only the baseline
    monkeypatch.setattr(_kernels, "_SUPPORTED", ("baseline",))
    before = _kernels.get_isa()
    for level in _kernels.LEVELS[1:]:
        with pytest.raises(RuntimeError, match=rf"KLFAST_ISA={level}: this CPU does not"):
            _kernels.set_isa(level)
    assert _kernels.get_isa() == before


def test_every_level_agrees_on_random_and_special_rows():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(203), size=64)
    q = rng.dirichlet(np.ones(203), size=64)
    p[:, ::9] = 0
    q[:, ::11] = 0
    q[5, 7] = 5e-324          # subnormal: the exact path
    p /= p.sum(axis=1, keepdims=True)  # distributions again, with exact zeros
    q /= q.sum(axis=1, keepdims=True)
    assert q[5, 7] == 5e-324
    p[6, :] = q[6, :]         # identical rows
    before = _kernels.get_isa()
    results = {}
    try:
        for level in _kernels.supported_isas():
            _kernels.set_isa(level)
            results[level] = [klfast.kl(p, q, eps=eps) for eps in (0.0, 1e-12)] + [
                klfast.jeffreys(p, q), klfast.entropy(p), klfast.cross_entropy(p, q),
                klfast.jensen_shannon(p, q)]
    finally:
        _kernels.set_isa(before)
    base = results["baseline"]
    for level, values in results.items():
        for got, want in zip(values, base):
            # FMA (AVX2 / AVX-512) against mul+add (baseline): a few ulp
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15, err_msg=level)


OBJDUMP = shutil.which("objdump")
VECTOR_DIV = {  # packed division of the level's width in each kernel
    ("baseline", "f64"): r"\bdivpd\s+%xmm", ("baseline", "f32"): r"\bdivps\s+%xmm",
    ("avx2", "f64"): r"\bvdivpd\s+.*%ymm", ("avx2", "f32"): r"\bvdivps\s+.*%ymm",
    ("avx512", "f64"): r"\bvdivpd\s+.*%zmm", ("avx512", "f32"): r"\bvdivps\s+.*%zmm",
}
# float32 -log x (entropy, cross-entropy) has no division at these levels:
# its table lookup, a lane permute of floats (gcc: vpermps) or of the same bits
# as integers (clang: vpermd), one or two sources
VECTOR_LOOKUP = {"avx2": r"\bvperm(?:[it]2)?(?:ps|d)\s+.*%ymm",
                 "avx512": r"\bvperm(?:[it]2)?(?:ps|d)\s+.*%zmm"}


@pytest.mark.skipif(OBJDUMP is None or not sys.platform.startswith("linux"),
                    reason="needs binutils' objdump on Linux")
def test_hot_loops_stay_vectorised():
    """Each row kernel at each level must divide whole vectors of the level's
    width (the log's one division per element), or look up a table in them
    (float32 -log x at AVX2 and AVX-512). Scalar code would not."""
    listing = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", _kernels.__file__],
                             capture_output=True, text=True, check=True).stdout
    bodies = {}
    for match in re.finditer(r"<(klfast_\w+?_f(?:32|64)_\w+)>:\n(.*?)(?:\n\n|\Z)", listing,
                             re.S):
        bodies[match.group(1)] = match.group(2)
    measures = ["kl", "jeffreys", "entropy", "cross_entropy", "js"]
    for level in _kernels.LEVELS:
        for dtype in ("f64", "f32"):
            for measure in measures:
                name = f"klfast_{measure}_{dtype}_{level}"
                assert name in bodies, f"{name} missing from {_kernels.__file__}"
                marker = VECTOR_DIV[level, dtype]
                if measure in ("entropy", "cross_entropy") and dtype == "f32" \
                        and level in VECTOR_LOOKUP:
                    marker = VECTOR_LOOKUP[level]
                assert re.search(marker, bodies[name]), \
                    f"{name} has no packed division or lookup: its loop is no longer vectorised"
