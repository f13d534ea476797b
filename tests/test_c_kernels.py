"""The kernels at the C level, for every compiler and architecture the build
supports: tests/c/check_kernels.c (every measure and loss, both element
types, every tail of a row, at every level the CPU runs) against scalar
references, compiled with the build's flags.

* natively with gcc and with clang (clang must build the same levels);
* for aarch64 (NEON) with Debian's cross compiler, run under qemu-user.

A compiler or emulator that is missing skips its case, except in CI
(``CI=true``), where .ci/run installs them and every case must run.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-g0",
         "-Wall", "-Werror", f"-I{SRC}"]
# the levels' own flags, as setup.py gives them
X86_LEVELS = {"avx2": ["-march=x86-64-v3"],
              "avx512": ["-march=x86-64-v4", "-mprefer-vector-width=512"]}
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and IN_CI:
        pytest.fail(f"CI must install {', '.join(missing)} (.ci/run does)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def build(cc, tmp_path, x86):
    """check_kernels linked with every level this compiler builds here."""
    objects, defines = [], []
    levels = {"baseline": []} | (X86_LEVELS if x86 else {})
    for name, flags in levels.items():
        obj = tmp_path / f"{name}.o"
        subprocess.run([cc, *FLAGS, *flags, "-c", str(SRC / "levels" / f"{name}.c"), "-o", obj],
                       check=True, capture_output=True, text=True)
        objects.append(obj)
        if name != "baseline":
            defines.append(f"-DKLFAST_LEVEL_{name.upper()}=1")
    exe = tmp_path / "check_kernels"
    subprocess.run([cc, *FLAGS, *defines, str(ROOT / "tests" / "c" / "check_kernels.c"),
                    str(SRC / "engine" / "dispatch.c"), *objects, "-o", exe, "-lm"],
                   check=True, capture_output=True, text=True)
    return exe


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failures" in result.stdout
    return result.stdout


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 levels")
@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_every_level_natively(cc, tmp_path):
    need(cc)
    out = run([str(build(cc, tmp_path, x86=True))])
    assert "level baseline: checked" in out  # and every level this CPU runs
    if "avx512" in Path("/proc/cpuinfo").read_text():
        assert "level avx512: checked" in out and "level avx2: checked" in out


def test_aarch64_neon_under_qemu(tmp_path):
    need("aarch64-linux-gnu-gcc", "qemu-aarch64")
    exe = build("aarch64-linux-gnu-gcc", tmp_path, x86=False)
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", exe], capture_output=True,
                             text=True, check=True).stdout
    assert "fdiv\tv" in listing  # the logs divide whole NEON vectors
    out = run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe)])
    assert "level baseline: checked" in out
