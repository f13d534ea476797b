"""``klfast score`` against hostile files, signals and failures, as a subprocess.

Whatever happens, the command prints one line and exits 2 (or 128+N on
signal N), never overwrites an input, never leaves a temporary file and
never touches an existing OUT unless it succeeds. Forged files are written
byte by byte here; nothing is timed (timeouts only guard against hangs).
"""
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from klfast._core import reference as _reference

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="uses FIFOs, signals and resource limits"),
    pytest.mark.slow,  # every test starts the command line in a subprocess
]

K = 8


def command(*args):
    return [sys.executable, "-m", "klfast.cli", "score", *map(str, args)]


def run_cli(cwd, *args, limits=None, timeout=120):
    """Run ``klfast score ARGS`` in ``cwd``; ``limits``: {RLIMIT_*: bytes} for the child."""
    def set_limits():
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))

    return subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=set_limits if limits else None)


def rows(n_rows, k=K, seed=0):
    x = np.random.default_rng(seed).random((n_rows, k)) + 0.1
    return x / x.sum(1, keepdims=True)


def listing(directory):
    return sorted(os.listdir(directory))


def assert_one_line_error(run, expected=""):
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("klfast: error: " + expected), lines[0]


# ---------------------------------------------------------------- 9: OUT names an input


def _link(kind):
    def make(d):
        if kind == "hard":
            os.link(d / "sub" / "p.npy", d / "sub" / "alias.npy")
        else:
            os.symlink("p.npy", d / "sub" / "alias.npy")
        return "alias.npy"
    return make


OUT_IS_INPUT = {
    "same_name": lambda d: "p.npy",
    "dot_slash": lambda d: "./p.npy",
    "parent_dir": lambda d: "../sub/p.npy",
    "absolute": lambda d: str(d / "sub" / "p.npy"),
    "hard_link": _link("hard"),
    "symlink": _link("sym"),
    "q": lambda d: "q.npy",
}


@pytest.mark.parametrize("case", list(OUT_IS_INPUT))
def test_out_naming_an_input_is_refused(tmp_path, case):
    sub = tmp_path / "sub"
    sub.mkdir()
    np.save(sub / "p.npy", rows(50))
    np.save(sub / "q.npy", rows(50, seed=1))
    out = OUT_IS_INPUT[case](tmp_path)
    before = {name: (sub / name).read_bytes() for name in listing(sub)}
    run = run_cli(sub, "p.npy", "q.npy", "-m", "kl", "--out", out)
    assert_one_line_error(run, f"{out}: is the input file ")
    assert {name: (sub / name).read_bytes() for name in listing(sub)} == before


# ---------------------------------------------------------------- 10: signals and failures


def _start_long_run(tmp_path, out, *extra):
    """A run of many one-row chunks, returned once its temporary file exists."""
    np.save(tmp_path / "p.npy", rows(400_000, k=4))
    (tmp_path / out).write_bytes(b"previous result")
    before = listing(tmp_path)
    proc = subprocess.Popen(command("p.npy", "-m", "entropy", "--out", out, "--chunk-rows", "1",
                                    *extra),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not any(name.startswith(".klfast-") for name in listing(tmp_path)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no temporary file appeared: {proc.communicate()}")
        time.sleep(0.01)
    time.sleep(0.2)  # a few hundred chunks written
    return proc, before


@pytest.mark.parametrize("out", ["h.npy", "h.csv", "h.parquet"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_mid_run_leaves_nothing(tmp_path, signum, out):
    if out.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    proc, before = _start_long_run(tmp_path, out)
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 128 + signum, (proc.returncode, stderr)
    assert len(stderr.splitlines()) == 1 and "no output written" in stderr, stderr
    assert listing(tmp_path) == before
    assert (tmp_path / out).read_bytes() == b"previous result"


def test_refused_rename_is_one_line_and_leaves_nothing(tmp_path):
    proc, before = _start_long_run(tmp_path, "h.npy")
    os.unlink(tmp_path / "h.npy")  # the rename at the end will meet a directory
    (tmp_path / "h.npy").mkdir()
    (tmp_path / "h.npy" / "keep").write_text("x")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith(
        "klfast: error: h.npy: cannot write ("), stderr
    assert listing(tmp_path) == before and listing(tmp_path / "h.npy") == ["keep"]


@pytest.mark.parametrize("out", ["h.npy", "h.csv"])
def test_write_failure_is_one_line_and_leaves_nothing(tmp_path, out):
    np.save(tmp_path / "p.npy", rows(100_000))
    (tmp_path / out).write_bytes(b"previous result")
    # Files may not grow past 64 KB (Python ignores SIGXFSZ: writes fail with EFBIG).
    run = run_cli(tmp_path, "p.npy", "-m", "entropy", "--out", out, "--chunk-rows", "1000",
                  limits={resource.RLIMIT_FSIZE: 1 << 16})
    assert_one_line_error(run)
    assert "File too large" in run.stderr
    assert listing(tmp_path) == sorted(["p.npy", out])
    assert (tmp_path / out).read_bytes() == b"previous result"


# ---------------------------------------------------------------- 11: declared sizes, memory


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _forge_parquet_rows(path, n_rows, claimed):
    """A small Parquet file whose footer claims ``claimed`` rows: every
    zigzag varint ``n_rows`` of the footer (the row counts) is replaced."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"a": np.full(n_rows, 0.25), "b": np.full(n_rows, 0.75)})
    pq.write_table(table, path, write_statistics=False)
    data = Path(path).read_bytes()
    length = struct.unpack("<I", data[-8:-4])[0]
    footer = data[-8 - length:-8].replace(_varint(2 * n_rows), _varint(2 * claimed))
    Path(path).write_bytes(data[:-8 - length] + footer + struct.pack("<I", len(footer)) + b"PAR1")
    assert pq.ParquetFile(path).metadata.num_rows == claimed


def test_parquet_footer_claiming_a_trillion_rows(tmp_path):
    _forge_parquet_rows(tmp_path / "big.parquet", 777, 10**12)
    assert (tmp_path / "big.parquet").stat().st_size < 2048
    # limits keep a regression from taking the machine down with it
    run = run_cli(tmp_path, "big.parquet", "-m", "entropy", "--out", "h.npy",
                  "--chunk-rows", "1000",
                  limits={resource.RLIMIT_AS: 4 << 30, resource.RLIMIT_FSIZE: 1 << 30})
    assert_one_line_error(run, "big.parquet: declares 1,000,000,000,000 rows but holds 777")
    assert listing(tmp_path) == ["big.parquet"]


PEAK_RSS = """\
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def _peak_rss(cwd, *args):
    """Peak resident memory (bytes) of one ``klfast score`` run."""
    wrapper = subprocess.run([sys.executable, "-c", PEAK_RSS, *command(*args)], cwd=cwd,
                             capture_output=True, text=True, timeout=300, check=True)
    return int(wrapper.stdout)


def test_parquet_memory_is_bounded_by_the_chunk_within_a_row_group(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n_rows, k = 12_000, 1_000  # one row group of 96 MB that does not compress
    values = pa.array(rows(n_rows, k).ravel())
    pq.write_table(pa.table({"probs": pa.FixedSizeListArray.from_arrays(values, k)}),
                   tmp_path / "big.parquet", row_group_size=n_rows)
    pq.write_table(pa.table({"probs": pa.FixedSizeListArray.from_arrays(values[:10 * k], k)}),
                   tmp_path / "small.parquet")
    args = ["-m", "entropy", "--out", "h.npy", "--chunk-rows", "1000", "-q"]
    baseline = _peak_rss(tmp_path, "small.parquet", *args)
    peak = _peak_rss(tmp_path, "big.parquet", *args)
    assert peak - baseline < 80 << 20, (baseline, peak)  # a chunk is 8 MB


def _npy_with_header(path, shape, dtype="<f8", data=b""):
    """A .npy file whose header says ``shape``, followed by ``data``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(data)


# ---------------------------------------------------------------- 12: non-regular files


def test_fifo_input_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "p.csv")
    run = run_cli(tmp_path, "p.csv", "-m", "entropy", "--out", "h.npy", timeout=60)
    assert_one_line_error(run, "p.csv: is not a regular file")
    assert listing(tmp_path) == ["p.csv"]


def test_dev_zero_named_csv_is_refused(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.csv")
    run = run_cli(tmp_path, "zero.csv", "-m", "entropy", "--out", "h.npy", timeout=60,
                  limits={resource.RLIMIT_AS: 4 << 30})
    assert_one_line_error(run, "zero.csv: is not a regular file")


# ---------------------------------------------------------------- 13: CSV header rule


def _entropy_rows(tmp_path, text, *extra):
    (tmp_path / "p.csv").write_bytes(text.encode("utf-8"))
    run = run_cli(tmp_path, "p.csv", "-m", "entropy", "--normalize", "--out", "h.npy", *extra)
    return run, (np.load(tmp_path / "h.npy") if run.returncode == 0 else None)


@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["plain", "bom"])
def test_csv_byte_order_mark_is_not_a_header(tmp_path, bom):
    run, scores = _entropy_rows(tmp_path, bom + "0.2,0.3,0.5\n0.1,0.1,0.8\n0.5,0.25,0.25\n")
    assert run.returncode == 0, run.stderr
    assert scores.shape == (3,)
    run, scores = _entropy_rows(tmp_path, bom + "a,b,c\n0.2,0.3,0.5\n0.1,0.1,0.8\n")
    assert run.returncode == 0, run.stderr
    assert scores.shape == (2,)


def test_csv_numeric_header_is_never_guessed(tmp_path):
    text = "0,1,2\n0.2,0.3,0.5\n0.1,0.1,0.8\n"  # what pandas writes for unnamed columns
    run, _ = _entropy_rows(tmp_path, text)
    assert_one_line_error(run, "p.csv: line 1 (0,1,2) could be a header or a row of data; "
                               "say which with --header or --no-header")
    assert listing(tmp_path) == ["p.csv"]
    run, scores = _entropy_rows(tmp_path, text, "--header")
    assert run.returncode == 0 and scores.shape == (2,), run.stderr
    run, scores = _entropy_rows(tmp_path, text, "--no-header")
    assert run.returncode == 0 and scores.shape == (3,), run.stderr


def test_csv_mixed_first_line_is_not_dropped(tmp_path):
    run, _ = _entropy_rows(tmp_path, "0.2,O.3,0.5\n0.1,0.1,0.8\n")  # a typo, not a header
    assert_one_line_error(run, "p.csv: line 1 (0.2,O.3,0.5) could be a header")
    run, _ = _entropy_rows(tmp_path, "0.2,O.3,0.5\n0.1,0.1,0.8\n", "--no-header")
    assert_one_line_error(run, "p.csv: cannot parse CSV line 1")


def test_csv_header_options_are_documented(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "klfast.cli", "score", "--help"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout
    assert "--header" in help_text and "--no-header" in help_text


def test_csv_is_streamed_in_chunks_with_line_numbers(tmp_path):
    x = rows(1000)
    kept = x[777, 3]
    x[777, 3] = -0.5
    np.savetxt(tmp_path / "p.csv", x, delimiter=",", fmt="%.17g")
    run = run_cli(tmp_path, "p.csv", "-m", "entropy", "--out", "h.npy", "--chunk-rows", "64")
    assert_one_line_error(run, "p.csv: row 777 has a negative entry")
    x[777, 3] = kept
    np.savetxt(tmp_path / "p.csv", x, delimiter=",", fmt="%.17g")
    with open(tmp_path / "p.csv", "a") as f:
        f.write("0.5,0.5\n")
    run = run_cli(tmp_path, "p.csv", "-m", "entropy", "--out", "h.npy", "--chunk-rows", "64")
    assert_one_line_error(run, "p.csv: cannot parse CSV line 1001 (it has 2 values, "
                               "the first has 8)")


# ---------------------------------------------------------------- 14: forged files


def _npz_member(path, name, data, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr(name, data)


def _npy_bytes(shape, data=b""):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


FORGED = {
    # name: (make(dir) -> file name, expected after "klfast: error: ")
    "npy_negative_shape": (lambda d: _npy_with_header(d / "x.npy", (-1, 5)) or "x.npy",
                           "x.npy: not a valid .npy file (its header declares the shape (-1, 5))"),
    "npy_overflowing_shape": (lambda d: _npy_with_header(d / "x.npy", (2**62, 2**62)) or "x.npy",
                              "x.npy: not a valid .npy file (its header declares"),
    "npy_more_than_the_file": (lambda d: _npy_with_header(d / "x.npy", (10**12, 8),
                                                          data=b"\0" * 800) or "x.npy",
                               "x.npy: not a valid .npy file (its header declares "
                               "1000000000000x8 float64 values, 64,000,000,000,000 bytes, "
                               "but only 800 bytes follow)"),
    "npy_object_dtype": (lambda d: _npy_with_header(d / "x.npy", (2, 2), dtype="|O") or "x.npy",
                         "x.npy: dtype object is not supported"),
    "npz_member_not_npy": (lambda d: _npz_member(d / "x.npz", "probs", b"hello, world") or "x.npz",
                           "x.npz: array 'probs' is not a valid .npy member"),
    "npz_member_claiming_1e12_rows": (
        lambda d: _npz_member(d / "x.npz", "probs.npy", _npy_bytes((10**12, 8), b"\0" * 64))
        or "x.npz", "x.npz: array 'probs' is not a valid .npy member (its header declares"),
    "npz_deflated_member_claiming_1e12_rows": (
        lambda d: _npz_member(d / "x.npz", "probs.npy", _npy_bytes((10**12, 8), b"\0" * 64),
                              zipfile.ZIP_DEFLATED) or "x.npz",
        "x.npz: array 'probs' is not a valid .npy member (its header declares"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_file_is_one_line(tmp_path, case):
    make, expected = FORGED[case]
    name = make(tmp_path)
    run = run_cli(tmp_path, name, "-m", "entropy", "--out", "h.npy",
                  limits={resource.RLIMIT_AS: 4 << 30, resource.RLIMIT_FSIZE: 1 << 30})
    assert_one_line_error(run, expected)
    assert listing(tmp_path) == [name]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["stored", "deflated"])
def test_npz_members_are_scored(tmp_path, compression):
    x = rows(300)
    _npz_member(tmp_path / "x.npz", "probs.npy", _npy_bytes(x.shape, x.tobytes()), compression)
    run = run_cli(tmp_path, "x.npz", "-m", "entropy", "--out", "h.npy", "--chunk-rows", "7")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"), _reference.entropy(x), rtol=1e-12)


def test_npy_larger_than_the_address_space_is_scored(tmp_path):
    """Only the rows of a chunk are mapped: a file larger than RLIMIT_AS scores."""
    n_rows, k = 1 << 16, 1 << 10  # 512 MB
    x = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", shape=(n_rows, k))
    x[:] = 1.0 / k
    x.flush()
    del x
    cap = 400 << 20  # a run on a small file needs about 150 MB of address space
    assert cap < (tmp_path / "big.npy").stat().st_size
    run = run_cli(tmp_path, "big.npy", "-m", "entropy", "--out", "h.npy", "--threads", "1",
                  "--chunk-rows", "4096", limits={resource.RLIMIT_AS: cap})
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"), np.log(k), rtol=1e-12)


# ---------------------------------------------------------------- 15: Parquet without pyarrow


@pytest.mark.parametrize("args", [["p.npy", "--out", "h.parquet"], ["p.parquet", "--out", "h.npy"]],
                         ids=["output", "input"])
def test_parquet_without_pyarrow_is_one_line(tmp_path, args):
    blocked = tmp_path / "blocked" / "pyarrow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('pyarrow is blocked here')\n")
    work = tmp_path / "work"
    work.mkdir()
    np.save(work / "p.npy", rows(10))
    (work / "p.parquet").write_bytes(b"PAR1")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "blocked"))
    run = subprocess.run(command(*args, "-m", "entropy"), cwd=work, capture_output=True,
                         text=True, timeout=120, env=env)
    assert_one_line_error(run, f"{args[-1] if args[0] == 'p.npy' else args[0]}: ")
    assert "needs pyarrow: pip install 'klfast[parquet]'" in run.stderr
    assert listing(work) == ["p.npy", "p.parquet"]


# ---------------------------------------------------------------- 1: rows that are not distributions


def test_count_rows_are_an_error_unless_normalized_or_unchecked(tmp_path):
    counts = np.array([[3.0, 1.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    np.save(tmp_path / "counts.npy", counts)
    run = run_cli(tmp_path, "counts.npy", "-m", "entropy", "--out", "h.npy")
    assert_one_line_error(run, "counts.npy: row 0 sums to 8, not 1 (tolerance 0.001)")
    assert "--normalize" in run.stderr and "--no-sum-check" in run.stderr
    assert listing(tmp_path) == ["counts.npy"]

    run = run_cli(tmp_path, "counts.npy", "-m", "entropy", "--normalize", "--out", "h.npy")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"),
                               _reference.entropy(counts, normalize=True), rtol=1e-13)

    run = run_cli(tmp_path, "counts.npy", "-m", "entropy", "--no-sum-check", "--out", "raw.npy")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "raw.npy"),
                               _reference.entropy(counts, check_sums=False), rtol=1e-13)


def test_a_reference_row_that_is_no_distribution_is_named(tmp_path):
    np.save(tmp_path / "p.npy", rows(10))
    np.save(tmp_path / "q.npy", np.full(K, 1.0))
    run = run_cli(tmp_path, "p.npy", "q.npy", "-m", "kl", "--out", "kl.npy")
    assert_one_line_error(run, f"q.npy: row 0 sums to {K}, not 1")
