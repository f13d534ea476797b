"""The kernels at the C level: tests/c/check_kernels.c (every measure and
loss, both element types, every tail of a row, at every level the CPU runs)
against scalar references.

* on the installed klfast: the check is compiled as a shared object and
  called, in a Python process that imported ``klfast._kernels``, with that
  module's dispatch table (the binary users run, whichever compiler built it:
  CI runs it on a gcc build and on a clang build);
* for aarch64 (NEON): the baseline level compiled with Debian's cross
  compiler, with the build's flags, run under qemu-user.

A compiler or emulator that is missing skips its case, except in CI
(``CI=true``), where .ci/run installs them and every case must run.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
FLAGS = ["-O2", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-g0",
         "-Wall", "-Werror", f"-I{SRC}"]
LEVEL_FLAGS = ["-fpeel-loops"]  # what setup.py adds for the levels when gcc compiles them
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and IN_CI:
        pytest.fail(f"CI must install {', '.join(missing)} (.ci/run does)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def run(command, cwd=None):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^0 failures$", result.stdout, re.M), result.stdout
    return result.stdout


# Python code that calls the check on the installed klfast._kernels (its
# exported dispatch table) and exits with the check's status.
CALL_CHECK = """
import ctypes, sys
from klfast import _kernels
kernels = ctypes.CDLL(_kernels.__file__)  # the module already loaded: its symbols
check = ctypes.CDLL(sys.argv[1]).klfast_check_installed
check.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
levels = ctypes.addressof(ctypes.c_void_p.in_dll(kernels, "klfast_isa_levels"))
n_levels = ctypes.c_int.in_dll(kernels, "klfast_n_levels").value
has_level = ctypes.cast(kernels.klfast_cpu_has_level, ctypes.c_void_p).value
sys.exit(check(levels, n_levels, has_level))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a shared object through ctypes")
def test_the_installed_kernels(tmp_path):
    from klfast import _kernels  # (here: tests/test_pool.py imports this module)

    cc = shlex.split(os.environ.get("CC") or "cc")
    need(cc[0])
    lib = tmp_path / "check_kernels.so"
    result = subprocess.run([*cc, *FLAGS, "-fPIC", "-shared", "-DKLF_CHECK_INSTALLED",
                             str(ROOT / "tests" / "c" / "check_kernels.c"), "-o", lib, "-lm"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # in a child (a crash in a kernel fails this test, not the whole run),
    # away from the source folder (its klfast has no kernels)
    out = run([sys.executable, "-c", CALL_CHECK, str(lib)], cwd=tmp_path)
    for level in _kernels.supported_isas():  # every level this CPU runs
        assert f"level {level}: checked" in out, out


# The CPU features each x86-64 level's -march allows (as /proc/cpuinfo names
# them; abm: lzcnt), the OS support aside.
X86_FEATURES = {"avx2": {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "popcnt", "abm"},
                "avx512": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
                    reason="x86-64 Linux (/proc/cpuinfo)")
def test_the_cpus_levels_are_built_and_detected():
    """The levels above are those the dispatch table says the CPU runs: a
    level the build left out, or a CPU check that misses one, would shrink
    them silently. Here /proc/cpuinfo says which the CPU has."""
    from klfast import _kernels

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if IN_CI:  # gcc 12 and clang 14 build every level
        assert _kernels.LEVELS == ("baseline", "avx2", "avx512"), _kernels.MISSING_LEVELS
    for level, needed in X86_FEATURES.items():
        cpu_has = needed <= flags and (level == "avx2" or X86_FEATURES["avx2"] <= flags)
        if level in _kernels.LEVELS:
            assert (level in _kernels.supported_isas()) == cpu_has, (level, needed - flags)


@pytest.mark.slow
def test_aarch64_neon_under_qemu(tmp_path):
    cc = "aarch64-linux-gnu-gcc"
    need(cc, "qemu-aarch64")
    obj = tmp_path / "baseline.o"
    result = subprocess.run([cc, *FLAGS, *LEVEL_FLAGS, "-c", str(SRC / "levels" / "baseline.c"),
                             "-o", obj], capture_output=True, text=True)
    assert result.returncode == 0, f"{cc} baseline.c:\n{result.stderr}"
    exe = tmp_path / "check_kernels"
    subprocess.run([cc, *FLAGS, str(ROOT / "tests" / "c" / "check_kernels.c"),
                    str(SRC / "engine" / "dispatch.c"), obj, "-o", exe, "-lm"],
                   check=True, capture_output=True, text=True)
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", exe], capture_output=True,
                             text=True, check=True).stdout
    assert "fdiv\tv" in listing  # the logs divide whole NEON vectors
    out = run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe)])
    assert "level baseline: checked" in out
