"""Memory-mapped inputs larger than the address space left to the process.

Each case writes a ~1 GB ``.npy`` file, then scores it in a subprocess whose
address space (RLIMIT_AS) is capped at its size after mapping the file plus
256 MB. The cap counts the mapping itself, so the file is mapped (and the
pool's threads started) before the cap is set; from then on any full-size
temporary -- a copy, a dtype conversion, a byte swap -- fails with
MemoryError. The subprocess first checks that a full copy does fail, so the
cap is known to bite, then scores the file; the scores of a sample of rows
must equal an in-memory computation and scipy's rel_entr.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import rel_entr

import klfast

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="needs RLIMIT_AS and /proc/self/status"),
    pytest.mark.slow,  # a 1 GB file per case, scored in a subprocess
]

HEADROOM = 256 << 20  # bytes of address space the scoring may add
FILE_BYTES = 1 << 30
K = 1 << 14
BAND = 64  # rows (C order) or columns (Fortran order) holding values
# One kernel thread: memory is the point here, and a parallel region per
# converted block is slow on a busy machine (a thread that is descheduled
# stalls every block).
THREADS = 1

CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import klfast

    spec = json.loads(sys.argv[1])

    def vm_size():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    p = np.load(spec["p"], mmap_mode="r")
    q = np.load(spec["q"], mmap_mode="r")
    warm = np.full((512, 256), 1 / 256)
    klfast.kl(warm, warm, num_threads=2)  # start the pool's threads before the cap

    before = vm_size()
    resource.setrlimit(resource.RLIMIT_AS, (before + spec["headroom"], resource.RLIM_INFINITY))
    try:
        np.array(p)
        copy_refused = False
    except MemoryError:
        copy_refused = True
    # unnormalised and all-zero rows: scored as given
    scores = klfast.kl(p, q, eps=0.0, check_sums=False, num_threads=spec["threads"])
    np.save(spec["out"], scores)
    print(json.dumps({"copy_refused": copy_refused, "file_bytes": p.nbytes,
                      "vm_before": before}))
""")


def _write_npy(path, shape, dtype, fortran_order, seed):
    """A mostly sparse .npy: random values in [0.01, 1) in a few contiguous
    parts of the file (bands of whole rows in C order, the first columns in
    Fortran order), zeros elsewhere.

    The zeros stay a hole in the file, so it is quick to make and to score
    (zeros cost the kernel no logarithm, and an all-zero row scored as given,
    check_sums=False, has KL 0), while its size is what the address-space cap is about.
    Returns the indices of rows that hold values.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape,
                                      fortran_order=fortran_order)
    rng = np.random.default_rng(seed)
    n_rows, k = shape
    if fortran_order:
        array[:, :BAND] = rng.random((n_rows, BAND)) * 0.99 + 0.01
        filled = np.arange(n_rows)
    else:
        starts = (0, n_rows // 2, n_rows - BAND)
        for r0 in starts:
            array[r0:r0 + BAND] = rng.random((BAND, k)) * 0.99 + 0.01
        filled = np.concatenate([np.arange(r0, r0 + BAND) for r0 in starts])
    array.flush()
    del array
    return filled


CASES = {
    # name: (p dtype, Fortran order, q: "rows" = a second file like p, "ref" = one row)
    "c_float64_pairs": (np.dtype(np.float64), False, "rows"),  # kernel reads the map directly
    "float32_vs_float64_ref": (np.dtype(np.float32), False, "ref"),  # converted per block
    "fortran_float64": (np.dtype(np.float64), True, "ref"),
    "big_endian_float64": (np.dtype(">f8"), False, "ref"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_memmap_scored_with_bounded_memory(tmp_path, case):
    dtype, fortran, q_kind = CASES[case]
    n_files = 2 if q_kind == "rows" else 1
    n_rows = FILE_BYTES // n_files // (K * dtype.itemsize)
    p_path, q_path, out_path = tmp_path / "p.npy", tmp_path / "q.npy", tmp_path / "out.npy"
    filled = _write_npy(p_path, (n_rows, K), dtype, fortran, seed=1)
    if q_kind == "rows":
        _write_npy(q_path, (n_rows, K), dtype, fortran, seed=2)
    else:
        reference = np.random.default_rng(3).random(K) * 0.99 + 0.01
        np.save(q_path, reference / reference.sum())
    assert HEADROOM * 3 < n_files * n_rows * K * dtype.itemsize

    spec = {"p": str(p_path), "q": str(q_path), "out": str(out_path), "headroom": HEADROOM,
            "threads": THREADS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MB of address space per thread arena
    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["copy_refused"], "the address-space cap did not stop a full-size copy"

    scores = np.load(out_path)
    p = np.load(p_path, mmap_mode="r")
    q = np.load(q_path, mmap_mode="r")
    assert scores.shape == (n_rows,)
    assert scores.dtype == np.float64
    rng = np.random.default_rng(4)
    rows = np.unique(np.r_[rng.choice(filled, 100), rng.integers(0, n_rows, 20), n_rows - 1])
    assert np.count_nonzero(scores[filled]) == len(filled)
    p_rows = np.asarray(p[rows], dtype=np.float64)
    q_rows = np.asarray(q[rows] if q.ndim == 2 else q, dtype=np.float64)
    np.testing.assert_array_equal(scores[rows],
                                  klfast.kl(p_rows, q_rows, eps=0.0, check_sums=False))
    np.testing.assert_allclose(scores[rows], rel_entr(p_rows, q_rows).sum(axis=1),
                               rtol=1e-10, atol=1e-12)


CLI_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import klfast, klfast.cli

    def vm_size():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    warm = np.full((512, 256), 1 / 256)
    klfast.kl(warm, warm, num_threads=2)  # start the pool's threads before the cap
    file_bytes, headroom = int(sys.argv[1]), int(sys.argv[2])
    # the command maps the file itself: room for the mapping plus the headroom, so
    # once it is mapped a full-size copy (or float64 conversion) cannot fit
    resource.setrlimit(resource.RLIMIT_AS,
                       (vm_size() + file_bytes + headroom, resource.RLIM_INFINITY))
    sys.exit(klfast.cli.main(sys.argv[3:]))
""")


def test_command_line_scores_a_large_file_with_bounded_memory(tmp_path):
    n_rows = FILE_BYTES // (K * 4)
    filled = _write_npy(tmp_path / "p.npy", (n_rows, K), np.dtype(np.float32), False, seed=1)
    reference = np.random.default_rng(3).random(K) + 0.01
    np.save(tmp_path / "ref.npy", reference / reference.sum())
    args = ["score", "p.npy", "ref.npy", "--measure", "kl", "--eps", "0", "--no-sum-check",
            "--out", "kl.npy", "--quiet", "--threads", str(THREADS)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    env["MALLOC_ARENA_MAX"] = "2"
    run = subprocess.run([sys.executable, "-c", CLI_CHILD, str(FILE_BYTES), str(HEADROOM), *args],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    scores = np.load(tmp_path / "kl.npy")
    p = np.load(tmp_path / "p.npy", mmap_mode="r")
    q = np.load(tmp_path / "ref.npy")
    rows = np.r_[filled[::7], 1, n_rows - 2]
    p_rows = np.asarray(p[rows], dtype=np.float64)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores[rows], rel_entr(p_rows, q).sum(1), rtol=1e-10, atol=1e-12)
