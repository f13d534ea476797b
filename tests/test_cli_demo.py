"""``klfast demo``: its result line and the memory its default size needs."""
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("scipy")

pytestmark = pytest.mark.slow  # the demo runs in a subprocess


def test_result_line_names_the_threads_of_each_side(tmp_path):
    run = subprocess.run([sys.executable, "-m", "klfast.cli", "demo", "--rows", "2000",
                          "--cols", "100", "--repeat", "1", "--threads", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if "faster than scipy" in line)
    # 2,000 x 100 is large enough for klfast to use the threads it is given
    assert re.search(r"klfast\.kl \(2 threads\) is .*rel_entr.*\(1 thread", line), line


def test_default_size_fits_in_1_gb():
    from klfast.__main__ import build_parser

    defaults = build_parser().parse_args([])
    itemsize = np.dtype(defaults.dtype).itemsize
    # P, Q and scipy's rel_entr(P, Q) temporary, plus ~200 MB for Python, numpy and scipy
    peak = 3 * defaults.rows * defaults.cols * itemsize + (200 << 20)
    assert peak <= 1 << 30, peak
