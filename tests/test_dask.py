"""klfast on dask arrays: lazy results equal to the in-memory computation.

The fast tests use dask's synchronous scheduler; the distributed tests run a
real LocalCluster of two worker processes on ``.npy`` blocks on disk
(``dask.array.to_npy_stack``), as a cluster would read a shared filesystem.
"""
import json
import logging
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import klfast
from klfast._core import reference as _reference

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("dask.distributed")

# importing dask, and a LocalCluster of two processes: seconds
pytestmark = pytest.mark.slow

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")


def call(measure, p, q=None, lib=klfast, **kwargs):
    """lib.<measure>(p, q, **kwargs): klfast, or its slow twin klfast._core.reference."""
    function = getattr(lib, measure)
    if measure == "jensen_shannon":
        kwargs.pop("eps", None)  # always finite: it takes no eps
    return function(p, **kwargs) if measure == "entropy" else function(p, q, **kwargs)


def distributions(rng, shape, dtype=np.float64):
    x = rng.random(shape) + 0.01
    return (x / x.sum(-1, keepdims=True)).astype(dtype)


@pytest.fixture(autouse=True)
def synchronous_scheduler():
    with dask.config.set(scheduler="synchronous"):
        yield


def test_importing_klfast_does_not_import_dask(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import klfast, klfast.cli
        klfast.kl(np.full((300, 300), 1 / 300), np.full(300, 1 / 300))
        klfast.cli.build_parser()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "pyarrow")))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("measure", MEASURES)
def test_matches_in_memory(measure):
    rng = np.random.default_rng(0)
    p, q = distributions(rng, (1000, 37)), distributions(rng, (1000, 37))
    pd = da.from_array(p, chunks=(300, 37))
    qd = da.from_array(q, chunks=(250, 37))  # different row chunks: aligned by klfast
    result = call(measure, pd, qd, eps=0.0)
    assert isinstance(result, da.Array)
    assert result.shape == (1000,) and result.dtype == np.float64
    computed = result.compute()
    np.testing.assert_array_equal(computed, call(measure, p, q, eps=0.0))
    np.testing.assert_allclose(computed, call(measure, p, q, eps=0.0, lib=_reference),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("measure", ["kl", "jeffreys", "cross_entropy"])
@pytest.mark.parametrize("q_kind", ["numpy_row", "dask_row", "dask_2d_row"])
def test_single_reference_row_is_broadcast_not_materialised(monkeypatch, measure, q_kind):
    rng = np.random.default_rng(1)
    p, q = distributions(rng, (900, 50)), distributions(rng, 50)
    q_input = {"numpy_row": q, "dask_row": da.from_array(q, chunks=10),
               "dask_2d_row": da.from_array(q[None, :], chunks=(1, 50))}[q_kind]
    seen = []
    real_reduce = klfast._core.measures.reduce

    def spy(measure_, p_block, q_block, *args, **kwargs):
        if isinstance(p_block, np.ndarray):  # a block, not the call that dispatches to dask
            seen.append((p_block.shape, q_block.shape))
        return real_reduce(measure_, p_block, q_block, *args, **kwargs)

    monkeypatch.setattr(klfast._core.measures, "reduce", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dask_row is chunked along the axis
        result = call(measure, da.from_array(p, chunks=(200, 50)), q_input).compute()
    assert len(seen) == 5
    assert all(p_shape[0] > 1 and q_shape[:-1] in ((), (1,)) for p_shape, q_shape in seen)
    np.testing.assert_array_equal(result, call(measure, p, q))


def test_jensen_shannon_distance():
    rng = np.random.default_rng(9)
    p, q = distributions(rng, (300, 12)), distributions(rng, (300, 12))
    result = klfast.jensen_shannon(da.from_array(p, chunks=(70, 12)), q, distance=True, base=2)
    assert isinstance(result, da.Array)
    np.testing.assert_array_equal(result.compute(),
                                  klfast.jensen_shannon(p, q, distance=True, base=2))


def test_chunks_along_the_axis_are_rechunked_with_a_warning():
    rng = np.random.default_rng(2)
    p, q = distributions(rng, (400, 60)), distributions(rng, (400, 60))
    with pytest.warns(UserWarning, match="chunked along the reduction axis") as record:
        result = klfast.jeffreys(da.from_array(p, chunks=(100, 25)), q)
    assert record[0].filename == __file__  # the warning points at the caller
    assert all(len(c) == 1 for c in result.chunks[1:])
    np.testing.assert_array_equal(result.compute(), klfast.jeffreys(p, q))


def test_axis_keepdims_and_nd():
    rng = np.random.default_rng(3)
    p = rng.random((4, 30, 6)) + 0.01
    q = rng.random((4, 30, 1)) + 0.01  # broadcasts along the last axis
    pd = da.from_array(p, chunks=(2, 30, 4))
    for keepdims in (False, True):
        result = klfast.kl(pd, q, axis=1, keepdims=keepdims, normalize=True, base=2)
        expected = klfast.kl(p, q, axis=1, keepdims=keepdims, normalize=True, base=2)
        assert result.shape == expected.shape
        np.testing.assert_array_equal(result.compute(), expected)
    # unnormalised rows along axis 0, scored as given
    result = klfast.entropy(da.from_array(p, chunks=(4, 10, 6)), axis=0, check_sums=False)
    np.testing.assert_array_equal(result.compute(), klfast.entropy(p, axis=0, check_sums=False))


def test_unknown_row_chunk_sizes():
    rng = np.random.default_rng(8)
    p, q = distributions(rng, (200, 6)), distributions(rng, 6)
    keep = p[:, 0] > np.median(p[:, 0])
    pd = da.from_array(p, chunks=(50, 6))
    selected = pd[pd[:, 0] > np.median(p[:, 0])]  # row chunk sizes unknown (NaN)
    assert np.isnan(selected.shape[0])
    result = klfast.kl(selected, q, keepdims=True)
    np.testing.assert_array_equal(result.compute(), klfast.kl(p[keep], q, keepdims=True))
    # q = p + 0.5 is not a distribution: scored as given
    result = klfast.jeffreys(selected, selected + 0.5, check_sums=False)
    np.testing.assert_array_equal(result.compute(),
                                  klfast.jeffreys(p[keep], p[keep] + 0.5, check_sums=False))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        klfast.entropy(selected, axis=0)


def test_dtypes_and_mixed_inputs():
    rng = np.random.default_rng(4)
    p32 = distributions(rng, (100, 8), np.float32)
    counts = rng.integers(0, 5, (100, 8))
    result = klfast.kl(da.from_array(p32, chunks=(30, 8)), p32[::-1].copy())
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result.compute(), klfast.kl(p32, p32[::-1]))
    # numpy p, dask q; integer counts normalised
    result = klfast.cross_entropy(counts + 1, da.from_array(counts, chunks=(7, 8)) + 1, normalize=True)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result.compute(),
                                  klfast.cross_entropy(counts + 1, counts + 1, normalize=True))


def test_invalid_values_name_the_row_in_the_whole_array():
    rng = np.random.default_rng(5)
    p, q = distributions(rng, (1000, 10)), distributions(rng, 10)
    p[537, 3] = -0.25
    with pytest.raises(ValueError) as in_memory:
        klfast.kl(p, q)
    lazy = klfast.kl(da.from_array(p, chunks=(300, 10)), q)  # nothing is checked yet
    with pytest.raises(ValueError, match="row 537") as in_dask:
        lazy.compute()
    assert str(in_dask.value) == str(in_memory.value)
    p[537, 3] = np.nan
    p3 = p.reshape(10, 100, 10)
    with pytest.raises(ValueError, match=r"p: row \(5, 37\) contains NaN"):
        klfast.kl(da.from_array(p3, chunks=(3, 30, 10)), q).compute()


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_input_forms_and_temperature(measure, dtype):
    """Logits and log-probabilities: the bits of the in-memory call (each
    block is scored alone), close to scipy's log_softmax in float64."""
    from scipy.special import log_softmax

    rng = np.random.default_rng(7)
    p = (rng.standard_normal((500, 40)) * 3).astype(dtype)
    q = log_softmax(rng.standard_normal((500, 40)), axis=-1).astype(dtype)
    forms = "logits" if measure == "entropy" else ("logits", "log_probs")
    operands = (p,) if measure == "entropy" else (p, q)
    lazy = call(measure, *(da.from_array(x, chunks=(120, 40)) for x in operands),
                input=forms, temperature=1.5, check_sums=False)
    expected = call(measure, *operands, input=forms, temperature=1.5, check_sums=False)
    np.testing.assert_array_equal(lazy.compute(), expected)
    lp = log_softmax(p.astype(np.float64) / 1.5, axis=-1)
    twin = call(measure, np.exp(lp), None if measure == "entropy" else np.exp(q.astype(float)),
                lib=_reference, eps=0.0, check_sums=False)
    tolerance = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(expected, twin, rtol=tolerance, atol=tolerance)


def test_input_forms_errors():
    rng = np.random.default_rng(8)
    p, q = rng.standard_normal((1000, 10)), rng.standard_normal((1000, 10))
    pd, qd = da.from_array(p, chunks=(300, 10)), da.from_array(q, chunks=(300, 10))
    with pytest.raises(ValueError, match="no input is logits"):  # eager: no block computed
        klfast.kl(pd, qd, input="log_probs", temperature=2.0)
    with pytest.raises(ValueError, match="input for q must be"):
        klfast.kl(pd, qd, input=("logits", "logit"))
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        klfast.kl(pd, qd, input="logits", temperature=0.0)
    q[637, 2] = np.nan
    lazy = klfast.kl(pd, da.from_array(q, chunks=(300, 10)), input="logits")
    with pytest.raises(ValueError) as in_dask:
        lazy.compute()
    assert str(in_dask.value) == "q: row 637 contains NaN (at position 2)"
    with pytest.raises(ValueError) as in_memory:
        klfast.kl(p, q, input="logits")
    assert str(in_dask.value) == str(in_memory.value)


def test_eager_errors():
    pd = da.ones((10, 4), chunks=(5, 4))
    with pytest.raises(TypeError, match="out"):
        klfast.kl(pd, pd, out=np.empty(10))
    with pytest.raises(ValueError, match="eps"):
        klfast.kl(pd, pd, eps=-1)
    with pytest.raises(ValueError, match="base"):
        klfast.entropy(pd, base=1)
    with pytest.raises(ValueError, match="num_threads"):
        klfast.kl(pd, pd, num_threads=0)
    with pytest.raises(ValueError, match="same length along axis"):
        klfast.kl(pd, da.ones((10, 5)))
    with pytest.raises(ValueError, match="do not broadcast"):
        klfast.kl(pd, da.ones((3, 4)))
    with pytest.raises(TypeError, match="complex"):
        klfast.kl(pd, da.ones((10, 4), dtype=complex))
    with pytest.raises(np.exceptions.AxisError):
        klfast.kl(pd, pd, axis=2)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("mask_kind", ["numpy", "dask"])
def test_where(measure, mask_kind):
    """where= on dask inputs: rows left out (NaN in p) are never read and are
    NaN; the others match the slow twin on the included rows alone."""
    rng = np.random.default_rng(11)
    p, q = distributions(rng, (900, 23)), distributions(rng, (900, 23))
    keep = rng.random(900) < 0.4
    p[~keep] = np.nan
    mask = da.from_array(keep, chunks=200) if mask_kind == "dask" else keep
    pd = da.from_array(p, chunks=(300, 23))
    qd = da.from_array(q, chunks=(250, 23))
    got = call(measure, pd, qd, where=mask).compute()
    assert np.isnan(got[~keep]).all()
    np.testing.assert_allclose(got[keep], call(measure, p[keep], q[keep], lib=_reference),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(got, call(measure, p, q, where=keep))
    # columns (axis=0) and a mask of the kept shape
    got = call(measure, pd.T, qd.T, axis=0, keepdims=True,
               where=mask[None, :]).compute()
    assert got.shape == (1, 900)
    np.testing.assert_array_equal(got[0], call(measure, p, q, where=keep))


def test_where_errors():
    pd = da.ones((10, 4), chunks=(5, 4)) / 4
    with pytest.raises(TypeError, match="where must be bool"):
        klfast.kl(pd, pd, where=np.ones(10, int))
    with pytest.raises(TypeError, match="where must be bool"):
        klfast.kl(pd, pd, where=da.ones(10, dtype=int, chunks=5))
    with pytest.raises(ValueError, match=r"where of shape \(3,\) does not broadcast"):
        klfast.kl(pd, pd, where=da.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="MaskedArray"):
        klfast.kl(pd, pd, where=np.ma.masked_array(np.ones(10, bool)))
    unknown = da.ones(10, dtype=bool, chunks=5)[da.ones(10, dtype=bool, chunks=5)]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        klfast.kl(pd, pd, where=unknown)


# ---------------------------------------------------------------- distributed


@pytest.fixture(scope="module")
def cluster_client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def stored_blocks(tmp_path_factory):
    """P and Q as directories of .npy row blocks, plus the arrays themselves."""
    root = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(6)
    p, q = distributions(rng, (20_000, 64)), distributions(rng, (20_000, 64))
    with dask.config.set(scheduler="synchronous"):
        da.to_npy_stack(root / "p", da.from_array(p, chunks=(2_500, 64)), axis=0)
        da.to_npy_stack(root / "q", da.from_array(q, chunks=(4_000, 64)), axis=0)
    return root, p, q


@pytest.mark.parametrize("measure", MEASURES)
def test_local_cluster_on_npy_blocks(cluster_client, stored_blocks, measure):
    root, p, q = stored_blocks
    pd = da.from_npy_stack(root / "p", mmap_mode="r")
    qd = da.from_npy_stack(root / "q", mmap_mode="r")
    assert len(cluster_client.scheduler_info()["workers"]) == 2
    scores = cluster_client.compute(call(measure, pd, qd)).result()
    np.testing.assert_array_equal(scores, call(measure, p, q))
    np.testing.assert_allclose(scores, call(measure, p, q, lib=_reference), rtol=1e-9, atol=1e-12)


def test_local_cluster_reference_row_and_errors(cluster_client, stored_blocks):
    root, p, q = stored_blocks
    pd = da.from_npy_stack(root / "p", mmap_mode="r")
    scores = cluster_client.compute(klfast.kl(pd, q[0], base=2)).result()
    np.testing.assert_array_equal(scores, klfast.kl(p, q[0], base=2))
    bad = q[0].copy()
    bad[5] = -1.0
    # the row of whichever block fails first: any row, as q is broadcast to all
    with pytest.raises(ValueError, match=r"q: row \d+ has a negative entry .* at position 5"):
        cluster_client.compute(klfast.kl(pd, bad)).result()


def test_cli_on_a_running_cluster(cluster_client, tmp_path):
    rng = np.random.default_rng(7)
    p, q = distributions(rng, (5_000, 40)), distributions(rng, (5_000, 40))
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "ref.npy", q[0])
    address = cluster_client.scheduler.address
    cli = [sys.executable, "-m", "klfast.cli", "score"]
    run = subprocess.run(cli + ["p.npy", "q.npy", "--measure", "jeffreys", "--out", "j.parquet",
                                "--chunk-rows", "700", "--dask-scheduler", address],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    import pyarrow.parquet as pq

    scores = pq.read_table(tmp_path / "j.parquet")["jeffreys"].to_numpy()
    np.testing.assert_array_equal(scores, klfast.jeffreys(p, q))
    run = subprocess.run(cli + ["p.npy", "ref.npy", "-m", "kl", "--out", "k.npy", "--axis", "-1",
                                "--dask-scheduler", address, "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), klfast.kl(p, q[0]))
    p[4321, 7] = np.nan
    np.save(tmp_path / "p.npy", p)
    run = subprocess.run(cli + ["p.npy", "q.npy", "-m", "kl", "--out", "bad.npy",
                                "--chunk-rows", "1000", "--dask-scheduler", address],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == "klfast: error: p.npy: row 4321 contains NaN (at position 7)"
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.glob(".klfast-*"))


def test_cli_summary_on_a_running_cluster(cluster_client, tmp_path):
    """--summary-out gives the same bytes on the cluster as locally, for any --chunk-rows."""
    rng = np.random.default_rng(8)
    np.save(tmp_path / "p.npy", distributions(rng, (4_000, 30)))
    np.save(tmp_path / "q.npy", distributions(rng, (4_000, 30)))
    cli = [sys.executable, "-m", "klfast.cli", "score", "p.npy", "q.npy", "-m", "kl"]
    texts = set()
    for name, extra in (("local.json", []),
                        ("dask-700.json", ["--chunk-rows", "700",
                                           "--dask-scheduler", cluster_client.scheduler.address]),
                        ("dask-3999.json", ["--chunk-rows", "3999", "--threads", "2",
                                            "--dask-scheduler", cluster_client.scheduler.address])):
        run = subprocess.run(cli + ["--summary-out", name, *extra], capture_output=True,
                             text=True, cwd=tmp_path, timeout=120)
        assert run.returncode == 0, run.stderr
        texts.add((tmp_path / name).read_text())
    assert len(texts) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dask-3999.json", "dask-700.json", "local.json", "p.npy", "q.npy"]


def test_cli_where_on_a_running_cluster(cluster_client, tmp_path):
    """--where MASK.npy on the cluster: each task reads its rows of the mask;
    the rows left out (NaN in P) are never read, and the scores and the
    summary are the same bytes as a local run."""
    rng = np.random.default_rng(9)
    p, q = distributions(rng, (3_000, 20)), distributions(rng, (3_000, 20))
    mask = rng.random(3_000) < 0.5
    p[~mask] = np.nan
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "mask.npy", mask)
    cli = [sys.executable, "-m", "klfast.cli", "score", "p.npy", "q.npy", "-m", "kl",
           "--where", "mask.npy", "--quiet"]
    for tag, extra in (("local", []),
                       ("dask", ["--chunk-rows", "700",
                                 "--dask-scheduler", cluster_client.scheduler.address])):
        run = subprocess.run(cli + ["--out", f"{tag}.npy", "--summary-out", f"{tag}.json",
                                    *extra], capture_output=True, text=True, cwd=tmp_path,
                             timeout=120)
        assert run.returncode == 0, run.stderr
    dask_scores = np.load(tmp_path / "dask.npy")
    assert np.isnan(dask_scores[~mask]).all()
    np.testing.assert_allclose(dask_scores[mask], call("kl", p[mask], q[mask], lib=_reference),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(dask_scores, np.load(tmp_path / "local.npy"))
    assert (tmp_path / "dask.json").read_text() == (tmp_path / "local.json").read_text()
    assert json.loads((tmp_path / "dask.json").read_text())["count"] == mask.sum()
