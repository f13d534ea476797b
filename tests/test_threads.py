"""Threads: the default thread count follows OpenMP limits, results do not
depend on it, concurrent Python threads and forked children work."""
import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import klfast
from klfast._core.engine import MIN_PARALLEL_ELEMENTS
from zoo import MEASURES, call, call_ref, distributions

threadpoolctl = pytest.importorskip("threadpoolctl")

OPENMP = klfast._config.config()["openmp"] if hasattr(klfast, "_config") else True


def allowed_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_python(code, env_update=None, timeout=60):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.update(env_update or {})
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=timeout,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def big_pair(rng, dtype=np.float64):
    n, k = 2 * MIN_PARALLEL_ELEMENTS // 50, 50
    return distributions(rng, (n, k), dtype=dtype), distributions(rng, (n, k), dtype=dtype)


# --- default_num_threads ---------------------------------------------------------

def test_default_num_threads_is_bounded_by_cpus():
    n = klfast.default_num_threads()
    assert isinstance(n, int)
    assert 1 <= n <= allowed_cpus()
    if not OPENMP:
        assert n == 1


def test_default_num_threads_respects_threadpoolctl():
    before = klfast.default_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert klfast.default_num_threads() == 1
    assert klfast.default_num_threads() == before
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert klfast.default_num_threads() == 1


def test_klfast_openmp_is_visible_to_threadpoolctl():
    if not OPENMP:
        pytest.skip("built without OpenMP")
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


@pytest.mark.parametrize("value", ["1", "2", "64"])
def test_default_num_threads_respects_omp_num_threads(value):
    out = run_python("import klfast; print(klfast.default_num_threads())",
                     {"OMP_NUM_THREADS": value})
    expected = 1 if not OPENMP else min(int(value), allowed_cpus())
    assert int(out) == expected


def test_default_num_threads_without_env_uses_allowed_cpus():
    out = run_python("import klfast; print(klfast.default_num_threads())")
    assert int(out) == (allowed_cpus() if OPENMP else 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_num_threads_respects_cpu_affinity():
    if allowed_cpus() < 2:
        pytest.skip("needs two CPUs")
    out = run_python("""
        import os
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import klfast
        print(klfast.default_num_threads())
    """)
    assert int(out) == 1


# --- results do not depend on the thread count ---------------------------------------

@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_identical_for_every_thread_count(rng, measure, dtype):
    p, q = big_pair(rng, dtype)
    want = call_ref(measure, p[:100], q[:100])
    one = call(measure, p, q, num_threads=1)
    np.testing.assert_allclose(one[:100], want, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=1e-14 if dtype == np.float64 else 1e-7)
    for num_threads in (2, 4, 16, None):
        assert np.array_equal(call(measure, p, q, num_threads=num_threads), one)
    with threadpoolctl.threadpool_limits(limits=1):
        assert np.array_equal(call(measure, p, q), one)


def test_more_threads_than_rows(rng):
    p = distributions(rng, (3, MIN_PARALLEL_ELEMENTS))
    q = distributions(rng, (3, MIN_PARALLEL_ELEMENTS))
    one = klfast.kl(p, q, num_threads=1)
    np.testing.assert_allclose(one, call_ref("kl", p, q), rtol=1e-12)
    assert np.array_equal(klfast.kl(p, q, num_threads=64), one)


def test_huge_num_threads_does_not_kill_the_process():
    """num_threads far above the machine's thread limit: the call must still
    return (capped) or raise, never abort or crash the interpreter. Run in a
    subprocess, since the failure mode is the death of the process."""
    code = """
        import numpy as np, klfast
        p = np.full((70000, 1), 1.0)
        for n in (10**6, 10**5):
            r = klfast.kl(p, p, num_threads=n)
            assert r.shape == (70000,) and not r.any()
        print("ok")
    """
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == 0 and result.stdout.strip() == "ok", (
        f"exit code {result.returncode}: {result.stderr.strip()[-300:]}")


# --- concurrent Python threads ---------------------------------------------------------

@pytest.mark.parametrize("num_threads", [1, None])
def test_concurrent_python_threads(rng, num_threads):
    jobs = []
    for i in range(24):
        measure = MEASURES[i % 4]
        shape = (2000 + 37 * i, 40) if i % 3 else (50, 7)  # some big, some tiny
        dtype = np.float32 if i % 5 == 0 else np.float64
        p = distributions(rng, shape, dtype=dtype)
        q = distributions(rng, shape[-1:] if i % 2 else shape, dtype=dtype)
        jobs.append((measure, p, q, call_ref(measure, p, q)))

    def work(job):
        measure, p, q, _ = job
        return [call(measure, p, q, num_threads=num_threads) for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs * 2))
    for (measure, p, q, want), runs in zip(jobs * 2, results):
        tol = dict(rtol=1e-6, atol=1e-7) if p.dtype == np.float32 else dict(rtol=1e-12,
                                                                              atol=1e-14)
        np.testing.assert_allclose(runs[0], want, **tol)
        for run in runs[1:]:
            assert np.array_equal(run, runs[0])


def test_concurrent_errors_do_not_leak_between_threads(rng):
    good_p = distributions(rng, (3000, 30))
    good_q = distributions(rng, (3000, 30))
    bad_q = good_q.copy()
    bad_q[5, 0] = -1.0
    want = call_ref("kl", good_p, good_q)

    def work(i):
        if i % 2:
            with pytest.raises(ValueError, match=r"q.*row 5(?!\d)"):
                klfast.kl(good_p, bad_q)
            return None
        return klfast.kl(good_p, good_q)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(24)))
    for r in results[::2]:
        np.testing.assert_allclose(r, want, rtol=1e-12, atol=1e-14)


# --- fork -------------------------------------------------------------------------------

def _fork_inputs():
    rng = np.random.default_rng(7)
    return rng.random((4000, 64)), rng.random((300, 64))


def _child_scores(conn):
    """In a forked child: the row functions and pairwise, on the threads the
    parent used (the workers the parent started are gone: the pool, src/engine/
    pool.h, starts new ones), and the default thread count."""
    p, q = _fork_inputs()
    scores = [klfast.kl(p, q[:1], num_threads=n, normalize=True) for n in (None, 2, 2)]
    # the threads of this process now: the pool's worker and this one (no
    # BLAS call yet, whose threads the child would also start afresh)
    n_tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    conn.send([klfast.default_num_threads(), n_tasks] + scores
              + [klfast.pairwise(p, q, "kl", normalize=True, num_threads=2)])
    conn.close()


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs fork")
@pytest.mark.skipif(allowed_cpus() < 2, reason="needs two CPUs")
def test_forked_child_after_parallel_calls():
    """A child forked after the parent ran multi-threaded calls uses as many
    threads as the parent (its pool starts a worker again: the parent's are
    not in the child), computes the same bits and does not hang."""
    p, q = _fork_inputs()
    assert p.size >= MIN_PARALLEL_ELEMENTS
    # threads run in the parent first
    want = klfast.kl(p, q[:1], num_threads=2, normalize=True)
    np.testing.assert_allclose(want, call_ref("kl", p, q[:1], normalize=True), rtol=1e-12)
    want_pairs = klfast.pairwise(p, q, "kl", normalize=True, num_threads=2)
    np.testing.assert_allclose(want_pairs[:, :3], np.stack(
        [call_ref("kl", p, q[j], normalize=True) for j in range(3)], axis=1), rtol=1e-12)

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_scores, args=(send,))
    child.start()
    send.close()
    try:
        # a healthy child answers in well under a second
        ready = receive.poll(20)
        assert ready, "forked child hung in klfast (no result after 20 s)"
        results = receive.recv()
    finally:
        child.join(1)
        if child.is_alive():
            child.kill()
            child.join(5)
        receive.close()
    assert results[0] == klfast.default_num_threads()
    if results[1] is not None:  # Linux
        assert results[1] >= 2, "the forked child ran its 2-thread calls on one thread"
    for got in results[2:5]:
        assert np.array_equal(got, want)
    assert np.array_equal(results[5], want_pairs)
    assert child.exitcode == 0


@pytest.mark.parametrize("k", [4, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_threads_beside_a_busy_core_give_the_same_bits(rng, k, dtype):
    """Rows are taken a few at a time by whichever thread is free: while
    another process keeps a core busy, repeated 2-thread calls still give
    each row the bits of a 1-thread call (k = 4 goes across lanes)."""
    p = distributions(rng, (40_000, k)).astype(dtype)
    q = distributions(rng, (40_000, k)).astype(dtype)
    one = klfast.kl(p, q, num_threads=1)
    np.testing.assert_allclose(one[:50], call_ref("kl", p[:50], q[:50]),
                               rtol=1e-12 if dtype == np.float64 else 1e-5)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for _ in range(20):
            assert np.array_equal(klfast.kl(p, q, num_threads=2), one)
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("k", [4, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("columns", [False, True])
def test_claim_size_does_not_change_the_bits(rng, k, dtype, columns):
    """Any number of rows per claim, from one strip of lane tiles (64 rows)
    to all of them, gives each row the bits of a 1-thread call (k = 4 goes
    across lanes; so do distributions in columns, axis=0)."""
    from klfast import _kernels

    p = distributions(rng, (20_003, k)).astype(dtype)
    q = distributions(rng, (20_003, k)).astype(dtype)
    want = call_ref("kl", p[:50], q[:50])
    axis = {}
    if columns:
        p, q, axis = p.T.copy(), q.T.copy(), {"axis": 0}
    one = klfast.kl(p, q, num_threads=1, **axis)
    np.testing.assert_allclose(one[:50], want, rtol=1e-12 if dtype == np.float64 else 1e-5)
    before = _kernels.set_claim_bytes(1)
    try:
        for size in (1, 1 << 12, 1 << 40):
            _kernels.set_claim_bytes(size)
            assert np.array_equal(klfast.kl(p, q, num_threads=2, **axis), one)
    finally:
        assert _kernels.set_claim_bytes(before) == 1 << 40


# --- float32 results of the forms kernels ---------------------------------------------

THREADS_OF_A_FORMS_CALL = """
import os, sys
import numpy as np
import klfast
rng = np.random.default_rng(5)
a = rng.standard_normal((512, 4096)).astype(sys.argv[1])  # 2 blocks of input
b = (a + 0.3 * rng.standard_normal(a.shape)).astype(sys.argv[1])
before = len(os.listdir("/proc/self/task"))
two = klfast.kl(a, b, input="logits", num_threads=2)
after = len(os.listdir("/proc/self/task"))
one = klfast.kl(a, b, input="logits", num_threads=1)
print(before, after, two.dtype, one.tobytes() == two.tobytes())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.skipif(allowed_cpus() < 2, reason="needs two CPUs")
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_forms_call_with_a_float32_result_runs_on_its_threads(dtype, tmp_path):
    """The forms kernels (inputs as logits) give float64 per row, converted to
    the float32 result a block at a time: the inputs are still read as they
    are, on every thread (they were scored on one thread beside the
    conversion, the way inputs that need converting are). Seen as the pool's
    worker, which stays after the call: a thread more than before it."""
    result = subprocess.run([sys.executable, "-c", THREADS_OF_A_FORMS_CALL, dtype],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    before, after, out_dtype, same_bits = result.stdout.split()
    assert out_dtype == "float32" and same_bits == "True"
    assert int(after) > int(before), result.stdout
