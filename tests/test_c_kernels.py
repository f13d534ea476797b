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
from concurrent.futures import ThreadPoolExecutor
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


def compile_level(cc, name, flags, obj):
    result = subprocess.run([cc, *FLAGS, *flags, "-c", str(SRC / "levels" / f"{name}.c"),
                             "-o", obj], capture_output=True, text=True)
    assert result.returncode == 0, f"{cc} {name}.c:\n{result.stderr}"
    return obj


# each compiler's levels above the baseline (gcc's are the slowest to compile)
COMPILERS = {"gcc": X86_LEVELS, "aarch64-linux-gnu-gcc": {}, "clang": X86_LEVELS}


def compiler_of(item):
    spec = getattr(item, "callspec", None)
    return spec.params["cc"] if spec else "aarch64-linux-gnu-gcc"


@pytest.fixture(scope="module")
def levels(request, tmp_path_factory):
    """The level objects of every installed compiler this module's selected
    tests use, all compiled at once, one job per CPU (the compiles are most
    of these tests' time): {cc: {level: future of its object}}."""
    wanted = {compiler_of(item) for item in request.session.items
              if item.module is request.module}
    if os.uname().machine != "x86_64":
        wanted -= {"gcc", "clang"}
    tmp = tmp_path_factory.mktemp("levels")
    pool = ThreadPoolExecutor(os.cpu_count() or 1)
    jobs = {}
    for cc, above in COMPILERS.items():
        if cc in wanted and shutil.which(cc):
            names = {"baseline": []} | above
            jobs[cc] = {name: pool.submit(compile_level, cc, name, flags, tmp / f"{cc}-{name}.o")
                        for name, flags in reversed(names.items())}  # the highest first
    yield jobs
    pool.shutdown(cancel_futures=True)


def build(cc, levels, tmp_path):
    """check_kernels linked with every level this compiler builds here."""
    objects = [job.result() for job in levels[cc].values()]
    defines = [f"-DKLFAST_LEVEL_{name.upper()}=1" for name in levels[cc] if name != "baseline"]
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
def test_every_level_natively(cc, levels, tmp_path):
    need(cc)
    out = run([str(build(cc, levels, tmp_path))])
    assert "level baseline: checked" in out  # and every level this CPU runs
    if "avx512" in Path("/proc/cpuinfo").read_text():
        assert "level avx512: checked" in out and "level avx2: checked" in out


def test_aarch64_neon_under_qemu(levels, tmp_path):
    need("aarch64-linux-gnu-gcc", "qemu-aarch64")
    exe = build("aarch64-linux-gnu-gcc", levels, tmp_path)
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", exe], capture_output=True,
                             text=True, check=True).stdout
    assert "fdiv\tv" in listing  # the logs divide whole NEON vectors
    out = run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe)])
    assert "level baseline: checked" in out
