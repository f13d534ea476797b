"""The row loop's thread pool (src/engine/pool.h) at the C level:
tests/c/check_pool.c, built with gcc's ThreadSanitizer (data races, lock
order; clang's needs a runtime Debian packages apart), and plain with gcc and
clang, then with a forked child. A compiler that is missing skips its case,
except in CI, where .ci/run installs them."""
import subprocess
import sys
import sysconfig

import pytest

from test_c_kernels import ROOT, SRC, need

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pool needs pthreads")


@pytest.mark.parametrize("cc, mode", [("gcc", "thread-sanitizer"), ("gcc", "fork"),
                                      ("clang", "fork")])
def test_pool(cc, mode, tmp_path):
    need(cc)
    flags = ["-O1", "-g", "-fsanitize=thread"] if mode == "thread-sanitizer" else ["-O2"]
    exe = tmp_path / "check_pool"
    build = subprocess.run(
        [cc, *flags, "-Wall", "-Werror", "-pthread", f"-I{SRC}",
         f"-I{sysconfig.get_paths()['include']}", str(ROOT / "tests" / "c" / "check_pool.c"),
         "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, f"{cc} check_pool.c:\n{build.stderr}"
    args = [str(exe)] + (["fork"] if mode == "fork" else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", (
        f"exit code {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
