"""``klfast score --input / --temperature``: model outputs (logits,
log-probabilities) from float16 ``.npy`` files, scored a memory-mapped chunk
at a time, and the summary's top-1 agreement.

The command runs in this process (``klfast.cli.main``), so that the rows the
kernels receive can be inspected; the scores are checked against scipy's
log_softmax and rel_entr in float64, and against one in-memory klfast call on
the same data (the chunks must not change a bit).
"""
import json
import os
import signal

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

import klfast
from klfast import cli
from klfast._core import measures

N_ROWS, K = 300, 50


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """klfast score ARGS in tmp_path: (exit status, stdout, stderr); the
    signal handlers main() installs are put back."""
    monkeypatch.chdir(tmp_path)

    def run_score(*args):
        saved = {s: signal.getsignal(s) for s in cli.STOP_SIGNALS}
        try:
            status = cli.main(["score", *map(str, args)])
        except SystemExit as e:  # argparse: usage errors, --help
            status = e.code
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)
        out, err = capsys.readouterr()
        return status, out, err

    return run_score


def logits(seed, n_rows=N_ROWS, k=K, scale=3.0):
    return (np.random.default_rng(seed).standard_normal((n_rows, k)) * scale)


@pytest.fixture
def files(tmp_path):
    """float16 logits of a "model" and of a perturbed copy; some rows of the
    copy have another top-1 entry."""
    base = logits(1).astype(np.float16)
    quant = (base.astype(np.float64) + logits(2, scale=0.3)).astype(np.float16)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "quant.npy", quant)
    return tmp_path, base, quant


def reference(measure, lp, lq=None):
    """The measure of rows given as natural log-probabilities, in float64."""
    p = np.exp(lp)
    if measure == "entropy":
        return -(p * lp).sum(-1)
    q = np.exp(lq)
    if measure == "kl":
        return rel_entr(p, q).sum(-1)
    if measure == "jeffreys":
        return rel_entr(p, q).sum(-1) + rel_entr(q, p).sum(-1)
    if measure == "cross_entropy":
        return -(p * lq).sum(-1)
    m = (p + q) / 2
    return (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)) / 2


def listing(directory):
    return sorted(os.listdir(directory))


def assert_one_line_error(status, err, expected):
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("klfast: error: " + expected), lines[0]


# ---------------------------------------------------------------- results


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy", "jensen_shannon",
                                     "entropy"])
def test_float16_logits_against_log_softmax(run, files, measure):
    tmp_path, base, quant = files
    operands = ["base.npy"] if measure == "entropy" else ["base.npy", "quant.npy"]
    status, _, err = run(*operands, "--input", "logits", "-m", measure, "--out", "s.npy",
                         "--chunk-rows", 64, "--quiet")
    assert status == 0, err
    got = np.load(tmp_path / "s.npy")
    assert got.dtype == np.float32
    lp, lq = (log_softmax(x.astype(np.float64), axis=-1) for x in (base, quant))
    np.testing.assert_allclose(got, reference(measure, lp, lq), rtol=2e-5, atol=2e-6)
    # the chunked command gives the bits of one in-memory call
    args = (base,) if measure == "entropy" else (base, quant)
    np.testing.assert_array_equal(got, getattr(klfast, measure)(*args, input="logits"))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_forms_per_input_and_temperature(run, files, temperature):
    tmp_path, base, _ = files
    # Q as float32 log-probabilities
    lq = log_softmax(logits(3), axis=-1)
    np.save(tmp_path / "lq.npy", lq.astype(np.float32))
    status, _, err = run("base.npy", "lq.npy", "--input", "logits,log_probs", "--temperature",
                         temperature, "-m", "kl", "--out", "kl.csv", "--chunk-rows", 100, "-q")
    assert status == 0, err
    got = np.loadtxt(tmp_path / "kl.csv", skiprows=1)
    lp = log_softmax(base.astype(np.float64) / temperature, axis=-1)
    np.testing.assert_allclose(got, reference("kl", lp, lq.astype(np.float32)),
                               rtol=2e-5, atol=2e-6)


def test_single_reference_row_of_logits(run, files):
    tmp_path, base, quant = files
    np.save(tmp_path / "ref.npy", quant[7])
    status, _, err = run("base.npy", "ref.npy", "--input", "logits", "-m", "cross_entropy",
                         "--out", "ce.npy", "-q")
    assert status == 0, err
    lp = log_softmax(base.astype(np.float64), axis=-1)
    lq = log_softmax(quant[7].astype(np.float64))
    np.testing.assert_allclose(np.load(tmp_path / "ce.npy"), reference("cross_entropy", lp, lq),
                               rtol=2e-5, atol=2e-6)


def test_float16_rows_reach_the_kernels_memory_mapped(run, tmp_path, monkeypatch):
    """Each chunk of a float16 file is handed on as a float16 memory map,
    and no float32 copy of the file is made (8 MB here, 16 MB as float32)."""
    import tracemalloc

    n_rows, k, chunk = 4000, 1000, 500
    np.save(tmp_path / "a.npy", logits(4, n_rows, k).astype(np.float16))
    np.save(tmp_path / "b.npy", logits(5, n_rows, k).astype(np.float16))
    seen = []
    reduce = measures.reduce

    def spy(measure, p, q, *args, **kwargs):
        seen.append((type(p), p.dtype, q.dtype, len(p)))
        return reduce(measure, p, q, *args, **kwargs)

    monkeypatch.setattr(measures, "reduce", spy)
    tracemalloc.start()
    try:
        status, _, err = run("a.npy", "b.npy", "--input", "logits", "-m", "kl", "--summary",
                             "--out", "kl.npy", "--chunk-rows", chunk, "-q")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0, err
    assert len(seen) == n_rows // chunk
    assert all(kind is np.memmap and p == q == np.float16 and rows == chunk
               for kind, p, q, rows in seen), seen
    assert peak < n_rows * k * 4 // 2, peak


# ---------------------------------------------------------------- summary


def test_summary_reports_top1_agreement(run, files):
    tmp_path, base, quant = files
    status, out, err = run("base.npy", "quant.npy", "--input", "logits", "-m", "kl",
                           "--summary", "--summary-out", "s.json", "--chunk-rows", 70, "-q")
    assert status == 0, err
    document = json.loads((tmp_path / "s.json").read_text())
    agree = base.argmax(1) == quant.argmax(1)
    assert 0 < agree.sum() < N_ROWS  # the data has rows of both kinds
    assert document["top1_agreement"] == agree.sum() / N_ROWS
    assert document["input"] == ["logits", "logits"] and document["temperature"] == 1.0
    in_memory = klfast.summary(klfast.kl(base, quant, input="logits"))
    assert {key: document[key] for key in ("count", "mean", "stderr", "median", "max",
                                           "argmax")} == \
        {key: value for key, value in in_memory.to_dict().items()
         if key in ("count", "mean", "stderr", "median", "max", "argmax")}
    assert f"top-1    {100 * agree.sum() / N_ROWS:.6g}% of rows agree" in out


def test_probabilities_have_no_top1_agreement(run, tmp_path):
    p = np.full((5, 4), 0.25)
    np.save(tmp_path / "p.npy", p)
    status, out, err = run("p.npy", "p.npy", "-m", "kl", "--summary-out", "s.json", "-q")
    assert status == 0, err
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["top1_agreement"] is None and "input" not in document


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("options, expected", [
    (["--input", "logit"], "argument --input/-i: expected probs, log_probs, logits, or "
                           "FORM_P,FORM_Q, got 'logit'"),
    (["--input", "logits,probs,probs"], "argument --input/-i: expected"),
    (["--temperature", "2"], "--temperature: divides logits, but no input is logits"),
    (["--input", "log_probs", "--temperature", "2"], "--temperature: divides logits"),
    (["--input", "logits", "--temperature", "0"], "--temperature: must be > 0, got 0"),
    (["--input", "logits", "--temperature", "nan"], "argument --temperature/-t: expected a "
                                                    "finite number"),
])
def test_bad_options(run, files, options, expected):
    tmp_path, _, _ = files
    status, _, err = run("base.npy", "quant.npy", "-m", "kl", "--out", "kl.npy", *options)
    assert_one_line_error(status, err, expected)
    assert listing(tmp_path) == ["base.npy", "quant.npy"]


def test_two_forms_for_the_entropy(run, files):
    status, _, err = run("base.npy", "-m", "entropy", "--out", "h.npy", "--input",
                         "logits,probs")
    assert_one_line_error(status, err, "--input: entropy takes one input; give one form")


@pytest.mark.parametrize("value, form, expected", [
    (np.nan, "logits", "quant.npy: row 137 contains NaN (at position 5)"),
    (np.inf, "logits", "quant.npy: row 137 contains +inf at position 5"),
    (0.5, "log_probs", "quant.npy: row 137 has a log-probability above 0 (0.5) at position 5"),
])
def test_invalid_rows_name_the_file_and_row(run, files, value, form, expected):
    tmp_path, base, quant = files
    lq = log_softmax(quant.astype(np.float64), axis=-1).astype(np.float16)
    bad = (quant if form == "logits" else lq).copy()
    bad[137, 5] = value
    np.save(tmp_path / "quant.npy", bad)
    status, _, err = run("base.npy", "quant.npy", "--input", f"logits,{form}", "-m", "kl",
                         "--out", "kl.npy", "--summary-out", "s.json", "--chunk-rows", 64,
                         "--no-sum-check")  # float16 log-probabilities sum to 1 within 1e-3 only
    assert_one_line_error(status, err, expected)
    assert listing(tmp_path) == ["base.npy", "quant.npy"]  # no output, no temporary file


def test_invalid_reference_row(run, files):
    tmp_path, _, quant = files
    row = quant[0].copy()
    row[3] = np.nan
    np.save(tmp_path / "ref.npy", row)
    status, _, err = run("base.npy", "ref.npy", "--input", "logits", "-m", "kl", "--out", "k.npy")
    assert_one_line_error(status, err, "ref.npy: row 0 contains NaN (at position 3)")
    assert "k.npy" not in listing(tmp_path)


def test_help_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    text = capsys.readouterr().out
    for phrase in ("--input FORM", "--temperature T", "log_probs", "top1_agreement",
                   "--input logits --measure kl --summary"):
        assert phrase in text, phrase


def test_top1_of_float16_rows_is_numpy_argmax():
    """The integer shortcut for float16 rows gives np.argmax of the values
    (first of ties; -0.0 == 0.0), here on every float16 bit pattern but NaN."""
    values = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16).view(np.float16)
    values = values[~np.isnan(values)]
    rng = np.random.default_rng(9)
    rows = rng.choice(values, size=(2000, 7))
    rows[:100, :] = rng.choice(np.array([-0.0, 0.0, -np.inf, 1.0, -1.0], np.float16),
                               size=(100, 7))
    expected = np.argmax(rows.astype(np.float64), axis=1)
    np.testing.assert_array_equal(cli._top1(rows), expected)
    np.testing.assert_array_equal(cli._top1(rows[:, ::2]),
                                  np.argmax(rows[:, ::2].astype(np.float64), axis=1))


def test_where_scores_only_the_rows_it_names(run, files):
    """--where MASK.npy: rows left out are never read (NaN logits in them
    raise nothing), are NaN in OUT and are not in the summary."""
    tmp, base, quant = files
    mask = np.random.default_rng(5).random(N_ROWS) < 0.6
    poisoned = quant.copy()
    poisoned[~mask] = np.nan
    np.save(tmp / "poisoned.npy", poisoned)
    np.save(tmp / "mask.npy", mask)
    status, out, err = run("base.npy", "poisoned.npy", "--input", "logits", "--measure", "kl",
                           "--where", "mask.npy", "--chunk-rows", "64", "--out", "kl.npy",
                           "--summary-out", "s.json")
    assert status == 0, err
    got = np.load(tmp / "kl.npy")
    assert np.isnan(got[~mask]).all()
    lp = log_softmax(base[mask].astype(np.float64), axis=-1)
    lq = log_softmax(quant[mask].astype(np.float64), axis=-1)
    want = rel_entr(np.exp(lp), np.exp(lq)).sum(-1)
    np.testing.assert_allclose(got[mask], want, rtol=2e-5, atol=2e-6)
    summary = json.loads((tmp / "s.json").read_text())
    assert summary["count"] == mask.sum()
    np.testing.assert_allclose(summary["mean"], want.mean(), rtol=1e-4)
    agree = np.mean(base[mask].argmax(-1) == quant[mask].argmax(-1))
    assert summary["top1_agreement"] == pytest.approx(agree)


def test_where_errors(run, files):
    tmp, base, quant = files
    np.save(tmp / "short.npy", np.ones(N_ROWS - 1, bool))
    np.save(tmp / "ints.npy", np.ones(N_ROWS, np.int8))
    for mask, words in (("short.npy", "expected bool of shape (300,)"),
                        ("ints.npy", "got int8"), ("missing.npy", "not a readable .npy")):
        status, _, err = run("base.npy", "quant.npy", "--input", "logits", "--measure", "kl",
                             "--where", mask, "--out", "kl.npy")
        assert status == 2 and words in err and "--where" in err, err
        assert not (tmp / "kl.npy").exists()
    # an invalid row that is included is named by its row in the whole file
    mask = np.ones(N_ROWS, bool)
    mask[:100] = False
    bad = quant.copy()
    bad[:100] = np.nan
    bad[150, 3] = np.inf
    np.save(tmp / "bad.npy", bad)
    np.save(tmp / "mask.npy", mask)
    status, _, err = run("base.npy", "bad.npy", "--input", "logits", "--measure", "kl",
                         "--where", "mask.npy", "--chunk-rows", "64", "--out", "kl.npy")
    assert status == 2 and "row 150" in err, err
    assert not (tmp / "kl.npy").exists()


def _masked_table_data(seed=9):
    """P (probabilities, NaN in the rows the mask leaves out), Q and the mask."""
    rng = np.random.default_rng(seed)
    p = rng.random((N_ROWS, K)) + 0.01
    q = rng.random((N_ROWS, K)) + 0.01
    p /= p.sum(1, keepdims=True)
    q /= q.sum(1, keepdims=True)
    mask = rng.random(N_ROWS) < 0.6
    p[~mask] = np.nan  # never read: no error
    return p, q, mask


def _write_csv(path, p, mask, mask_text=None):
    names = [f"c{j}" for j in range(p.shape[1])]
    lines = [",".join(names[:3] + ["keep"] + names[3:])]
    for i, row in enumerate(p):
        fields = [repr(float(x)) for x in row]
        flag = str(int(mask[i])) if mask_text is None else mask_text(i, mask[i])
        lines.append(",".join(fields[:3] + [flag] + fields[3:]))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", ["list", "columns", "csv"])
def test_where_column_of_the_table(run, tmp_path, layout):
    """--where COLUMN: the mask is a column of P's table (bool in Parquet, 0/1
    in CSV), streamed beside the distributions and not one of them."""
    p, q, mask = _masked_table_data()
    np.save(tmp_path / "q.npy", q)
    if layout == "csv":
        _write_csv(tmp_path / "p.csv", p, mask)
        name = "p.csv"
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        if layout == "list":
            table = pa.table({"keep": mask, "probs": list(p)})
        else:  # one numeric column per category, the mask among them
            table = pa.table({**{f"c{j}": p[:, j] for j in range(3)}, "keep": mask,
                              **{f"c{j}": p[:, j] for j in range(3, K)}})
        pq.write_table(table, tmp_path / "p.parquet", row_group_size=100)
        name = "p.parquet"
    status, _, err = run(name, "q.npy", "-m", "kl", "--where", "keep", "--chunk-rows", "37",
                         "--out", "kl.npy", "--summary-out", "s.json")
    assert status == 0, err
    got = np.load(tmp_path / "kl.npy")
    assert np.isnan(got[~mask]).all()
    want = rel_entr(p[mask], q[mask]).sum(-1)
    np.testing.assert_allclose(got[mask], want, rtol=1e-12)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["count"] == mask.sum()
    np.testing.assert_allclose(summary["mean"], want.mean(), rtol=1e-12)


def test_where_column_errors(run, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p, q, mask = _masked_table_data()
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "p.npy", np.nan_to_num(p, nan=1.0 / K))
    pq.write_table(pa.table({"keep": mask.astype(np.int8), "probs": list(p)}),
                   tmp_path / "ints.parquet")
    pq.write_table(pa.table({"keep": mask, "probs": list(p)}), tmp_path / "p.parquet")
    _write_csv(tmp_path / "two.csv", p, mask, lambda i, m: "2" if i == 5 else str(int(m)))
    for args, words in (
            (["ints.parquet", "--where", "keep"], "ints.parquet: --where: column 'keep' holds int8, "
                                                  "not bool"),
            (["two.csv", "--where", "keep"], "two.csv: --where: column 'keep' holds 2 in row 5; "
                                             "a mask is 0 or 1"),
            (["two.csv", "--where", "keep", "--no-header"], "--where: a mask column needs the "
                                                            "CSV header line"),
            (["p.parquet", "--where", "gone"], "--where gone: p.parquet: no column 'gone'"),
            (["p.parquet", "--where", "keep", "--columns", "probs,keep"],
             "--where: column 'keep' is also in --columns"),
            (["p.npy", "--where", "keep"], "'keep' is neither a .npy mask file nor a column"),
            (["p.parquet", "--where", "keep", "--axis", "0"], "needs rows as distributions")):
        status, _, err = run(*args[:1], "q.npy", "-m", "kl", *args[1:], "--out", "kl.npy")
        assert status == 2 and words in err, (args, err)
        assert not (tmp_path / "kl.npy").exists()
