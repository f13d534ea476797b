"""Benchmark report: time klfast against every installed peer and write a report.

    python -m klfast.bench [--quick] [--measures kl,jeffreys] [--dtypes float64,float32]
                           [--shapes 1000000x100,100000x1000,...] [--threads 1,2]
                           [--zeros off,on] [--peers ...] [--repeat 5] [--out bench-report]

Measures: kl, jeffreys, entropy, cross_entropy, jensen_shannon. Writes
``OUT/report.md`` (tables of ns/element, GB/s, speed-up versus scipy, ratio to
the read floor, klfast's time for each measure relative to kl, the performance
checks the run covers, the machine), PNG plots and ``OUT/results.json`` (raw
timings). How the numbers are taken: benchmarks/README.md in the repository.
Every peer's result is checked against klfast once, outside the timed part; a
peer that disagrees is reported as such, never ranked. Install the peers with
``pip install "klfast[bench]"`` (torch separately: ``pip install torch==2.13.0``).
"""
import argparse
import datetime
import gc
import json
import math
import os
import shlex
import statistics
import sys
import time

import numpy as np

import klfast
from klfast.bench import peers as peers_mod
from klfast.bench import report
from klfast.bench.peers import Case, Shape, Unsupported

DEFAULT_SHAPES = "1000000x100,100000x1000,1000x100000,100000x1000:ref,1x11"
QUICK_SHAPES = "10000x100,1000x1000,10x100000,1000x1000:ref,10000x10:cols,1x11"
MIN_SAMPLE_SECONDS = 0.02  # short calls are looped until one sample takes this long
SLOW_CALL_SECONDS = 0.5    # calls slower than this get at most 3 samples


def _csv(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m klfast.bench",
        description="Time klfast against its peers and write a report folder.")
    parser.add_argument("--measures", default="kl,jeffreys",
                        help="comma list, from: %s (default: kl,jeffreys)"
                             % ", ".join(peers_mod.MEASURES))
    parser.add_argument("--dtypes", default="float64,float32", help="default: float64,float32")
    parser.add_argument("--shapes", default=None,
                        help="comma list of ROWSxCOLS; ROWSxCOLS:ref = one reference row (COLS,) "
                             "against ROWSxCOLS; ROWSxCOLS:cols = ROWS distributions stored as "
                             "the columns of a (COLS, ROWS) array, scored along axis 0 "
                             f"(default: {DEFAULT_SHAPES})")
    parser.add_argument("--threads", default=None,
                        help="comma list of thread counts for the threaded peers "
                             f"(default: 1,{klfast.default_num_threads()})")
    parser.add_argument("--zeros", default="off",
                        help="off, on or off,on: inputs with 10%% exact zeros (default: off)")
    parser.add_argument("--peers", default=None,
                        help="comma list of peers (default: every installed one): "
                             + ", ".join(p.name for p in peers_mod.PEERS))
    parser.add_argument("--isas", default=None,
                        help="also time klfast with its kernels forced to these instruction-set "
                             "levels, e.g. baseline,avx2,avx512 (default: only the level in use)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed samples per peer, median reported (default 5; 3 with --quick; "
                             f"at most 3 for calls over {SLOW_CALL_SECONDS} s)")
    parser.add_argument("--out", default="bench-report", help="report folder (default: ./bench-report)")
    parser.add_argument("--quick", action="store_true",
                        help=f"small shapes ({QUICK_SHAPES}; cache-resident, not representative) "
                             "and 3 samples: a smoke run in seconds")
    parser.add_argument("--seed", type=int, default=0, help="input generator seed")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory measurement (a subprocess per dtype)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--render", metavar="DIR",
                        help="only rewrite DIR/report.md and the plots from DIR/results.json "
                             "(for instance the partial results of an interrupted run)")
    args = parser.parse_args(argv)
    if args.render:
        return args

    args.measures = _csv(args.measures)
    for m in args.measures:
        if m not in peers_mod.MEASURES:
            parser.error(f"unknown measure {m!r}; choose from {', '.join(peers_mod.MEASURES)}")
    args.dtypes = _csv(args.dtypes)
    for d in args.dtypes:
        if d not in ("float64", "float32"):
            parser.error(f"unknown dtype {d!r}; choose float64 and/or float32")
    try:
        args.shapes = [Shape.parse(s) for s in _csv(args.shapes or (QUICK_SHAPES if args.quick
                                                                     else DEFAULT_SHAPES))]
    except ValueError as exc:
        parser.error(str(exc))
    default_threads = f"1,{klfast.default_num_threads()}"
    try:
        args.threads = sorted({int(t) for t in _csv(args.threads or default_threads)})
    except ValueError:
        parser.error(f"--threads must be a comma list of integers, got {args.threads!r}")
    if not args.threads or args.threads[0] < 1:
        parser.error("--threads: thread counts must be >= 1")
    zeros = {"off": False, "on": True}
    try:
        args.zeros = [zeros[z] for z in _csv(args.zeros)]
    except KeyError:
        parser.error(f"--zeros must be off, on or off,on, got {args.zeros!r}")
    if args.peers is None:
        args.peers = [p for p in peers_mod.PEERS if p.available()]
    else:
        names = _csv(args.peers)
        unknown = [n for n in names if n not in peers_mod.PEERS_BY_NAME]
        if unknown:
            parser.error(f"unknown peer(s) {unknown}; choose from "
                         + ", ".join(p.name for p in peers_mod.PEERS))
        wanted = {"klfast", "scipy", *names}  # the ratios need klfast and scipy
        args.peers = [p for p in peers_mod.PEERS if p.name in wanted]
        missing = [p.name for p in args.peers if not p.available()]
        if missing:
            parser.error(f"not installed: {', '.join(missing)} (pip install 'klfast[bench]')")
    if args.isas:
        extra = [peers_mod.KlfastIsaPeer(level) for level in _csv(args.isas)]
        missing = [p.level for p in extra if not p.available()]
        if missing:
            parser.error(f"--isas: level(s) {', '.join(missing)} not available on this CPU/build")
        position = next(i for i, p in enumerate(args.peers) if p is peers_mod.KLFAST) + 1
        args.peers[position:position] = extra
    if not peers_mod.SCIPY.available():
        parser.error("scipy is needed: it is the baseline of every ratio "
                     "(pip install 'klfast[bench]')")
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


# -- progress ----------------------------------------------------------------

class _SimpleBar:
    """A minimal progress bar on stderr for when tqdm is not installed."""

    def __init__(self, total):
        self.total, self.n, self.text = total, 0, ""
        self.start = time.perf_counter()

    def set_description_str(self, text, refresh=True):
        self.text = text
        if refresh:
            self._draw()

    def update(self, n=1):
        self.n += n
        self._draw()

    def _draw(self):
        width = 30
        filled = int(width * self.n / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total} "
                         f"{elapsed:5.0f}s {self.text[:60]:<60}")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return _SimpleBar(total)
    return tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True, mininterval=1.0)


# -- timing ------------------------------------------------------------------

def _warm_up(fn):
    """Call ``fn`` once (its result is returned for checking); how many calls
    make one sample (short calls are looped) and whether it is a slow call."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    number = 1 if first >= MIN_SAMPLE_SECONDS else max(1, math.ceil(MIN_SAMPLE_SECONDS / max(first, 1e-7)))
    return result, number, first >= SLOW_CALL_SECONDS


def _sample(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _tasks(case, args):
    # scipy first: for float64 inputs its answer is the accuracy reference
    # (Jensen-Shannon's is numpy's; see klfast.bench.peers.reference)
    order = sorted(args.peers, key=lambda peer: peer is not peers_mod.SCIPY)
    tasks = []
    for peer in order:
        if case.measure not in peer.measures:
            continue
        for threads in (args.threads if peer.threaded else [1]):
            tasks.append((peer, threads))
    return tasks


def _measures(shape, args):
    """The measures run on ``shape``: entropy reads P only, so with one
    reference row Q it would repeat the full-matrix case."""
    return [m for m in args.measures if not (shape.ref_row and m == "entropy")]


# peers sampled side by side in each turn (their ratios are the ones checked)
_PAIRED = ("klfast", "read floor", "numkong")


class _Timed:
    """One peer at one thread count, prepared and warmed up."""

    def __init__(self, case, peer, fn, number, slow, record):
        self.case, self.peer, self.fn, self.number, self.record = case, peer, fn, number, record
        self.n_samples = 3 if slow else None
        self.samples = []

    def sample(self):
        if isinstance(self.peer, peers_mod.KlfastIsaPeer):
            peers_mod.use_isa(self.peer.level)
        try:
            self.samples.append(_sample(self.fn, self.number))
        finally:
            if isinstance(self.peer, peers_mod.KlfastIsaPeer):
                peers_mod.restore_isa()


def prepare_case(case, p, q, args, bar):
    """Prepare, warm up and check every peer on one case: its records (dicts)
    and the peers ready to be timed (_Timed)."""
    reference = None
    records = []
    timed = []
    expected = None
    for peer, threads in _tasks(case, args):
        label = peer.label(threads)
        bar.set_description_str(f"{case.label}: {label}", refresh=False)
        record = {
            "measure": case.measure, "dtype": case.dtype, "shape": case.shape.key,
            "shape_label": case.shape.label, "n_rows": case.shape.n_rows, "k": case.shape.k,
            "ref_row": case.shape.ref_row, "cols": case.shape.cols, "zeros": case.zeros,
            "peer": peer.name,
            "label": label, "threads": threads, "elements": case.shape.elements,
            "bytes_read": case.bytes_read(),
        }
        records.append(record)
        try:
            try:
                fn = peer.prepare(case, p, q, threads)
                result, number, slow = _warm_up(fn)
            finally:
                if isinstance(peer, peers_mod.KlfastIsaPeer):
                    peers_mod.restore_isa()
        except Unsupported as exc:
            record["skipped"] = str(exc)
            bar.update(1 + args.repeat)  # its warm-up and samples will not run
            continue
        except Exception as exc:  # a peer that crashes is reported, not fatal
            record["error"] = f"{type(exc).__name__}: {exc}"
            bar.update(1 + args.repeat)
            continue
        bar.update(1)
        timed.append(_Timed(case, peer, fn, number, slow, record))
        if (reference is None and case.dtype == "float64"
                and peer is peers_mod.reference_peer(case.measure)):
            reference = result  # what peers_mod.reference computes, already at hand
        if peer is not peers_mod.READ_FLOOR:
            if reference is None:
                reference = peers_mod.reference(case, p, q)
            if peer is peers_mod.KLFAST and expected is None:
                expected = result
            if peer is peers_mod.KLFAST:
                record["identical_to_first_klfast"] = bool(np.array_equal(result, expected))
            ok_ref, err = peers_mod.agreement(result, reference, case.dtype, peer)
            # before klfast has run (scipy), a peer is checked against the reference
            ok, _ = peers_mod.agreement(result, reference if expected is None else expected,
                                        case.dtype, peer)
            # klfast must match the reference; a peer must match klfast
            # (and klfast must not depend on the thread count)
            if peer is peers_mod.KLFAST:
                ok = ok_ref and record["identical_to_first_klfast"]
            elif isinstance(peer, peers_mod.KlfastIsaPeer):
                ok = ok_ref
            record.update(agrees=ok, max_rel_err=err)
        del result
    return records, timed


def sample_in_turns(timed, repeat, bar):
    """Take the timed samples in turns (one of each, again, ...), so a machine
    whose speed drifts (shared, noisy) slows every peer alike and the ratios of
    one run stay comparable; then record the medians."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeat):
            bar.set_description_str(f"sampling in turns: turn {i + 1} of {repeat}", refresh=False)
            for t in timed:
                if t.n_samples is None or i < t.n_samples:
                    t.sample()
                bar.update(1)  # a slow call's skipped turn counts too
    finally:
        if gc_was_enabled:
            gc.enable()
    for t in timed:
        median = statistics.median(t.samples)
        t.record.update(median_s=median, min_s=min(t.samples), samples_s=t.samples,
                        calls_per_sample=t.number,
                        ns_per_element=median / t.case.shape.elements * 1e9,
                        gb_per_s=t.case.bytes_read() / median / 1e9)


def _derive(records):
    """Add speed-up versus scipy and the ratio to the read floor
    (klfast.bench.report.ratio: paired by turn when sampled in one group)."""
    ratio = report.ratio
    by_case = {}
    for r in records:
        key = (r["measure"], r["dtype"], r["shape"], r["zeros"])
        by_case.setdefault(key, []).append(r)
    for group in by_case.values():
        scipy_r = next((r for r in group if r["peer"] == "scipy" and "median_s" in r), None)
        floors = {r["threads"]: r for r in group
                  if r["peer"] == "read floor" and "median_s" in r}
        for r in group:
            if "median_s" not in r:
                continue
            if scipy_r is not None:
                r["speedup_vs_scipy"] = ratio(scipy_r, r)
            if r["threads"] in floors and r["peer"] != "read floor":
                r["x_read_floor"] = ratio(r, floors[r["threads"]])


def machine_info(args):
    """CPU, klfast's configuration, threads and library versions."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if cpu is None:
        import platform
        cpu = platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    memory = None
    try:
        import psutil
        memory = psutil.virtual_memory().total
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                memory = int(f.readline().split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    from klfast import _config
    import platform
    return {
        "cpu": cpu,
        "cpus_usable": cores,
        "memory_bytes": memory,
        "platform": platform.platform(),
        "libc": " ".join(platform.libc_ver()),
        "klfast_config": _config.config(),
        "threads_tested": args.threads,
        "versions": peers_mod.library_versions(),
        "environment": {k: os.environ[k] for k in
                        ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                         "NUMBA_NUM_THREADS", "KLFAST_ISA") if k in os.environ},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_at_start": _load_average(),
    }


def _load_average():
    """1-minute load average (None where unknown): other work on the machine
    slows every peer, and the threaded ones most."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _memory_runs(args, bar):
    """Peak memory of kl at the largest full-matrix shape per dtype."""
    from klfast.bench.memory import peak_memory
    full = [s for s in args.shapes if s.full]
    if not full:
        return []
    shape = max(full, key=lambda s: (s.elements, s.key == "100000x1000"))  # 100,000 x 1,000 first
    if shape.elements < 5_000_000:  # page-level noise would exceed the 5 % allowed
        shape = Shape(5_000, 1_000)
    runs = []
    for dtype in args.dtypes:
        bar.set_description_str(f"peak memory: kl {dtype} {shape.label}")
        try:
            runs.append(peak_memory(shape.n_rows, shape.k, dtype, "kl"))
        except Exception as exc:
            runs.append({"n_rows": shape.n_rows, "k": shape.k, "dtype": dtype, "measure": "kl",
                         "error": f"{type(exc).__name__}: {exc}"})
        bar.update(1)
    return runs


def render(folder, plots=True):
    """Write report.md (and the plots) from folder/results.json."""
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    _derive(results["records"])
    made = report.plots(results, folder) if plots else []
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write(report.markdown(results, made))
    return results


def main(argv=None):
    args = _parse_args(argv)
    if args.render:
        results = render(args.render, plots=not args.no_plots)
        print(report.summary(results))
        print(f"\nreport: {os.path.join(args.render, 'report.md')}")
        return 0
    command = "python -m klfast.bench" + ("".join(" " + shlex.quote(a) for a in argv)
                                          if argv is not None else
                                          "".join(" " + shlex.quote(a) for a in sys.argv[1:]))
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("klfast.bench: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set and may slow numpy; "
              "consider: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m klfast.bench ...",
              file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    info = machine_info(args)

    # one step per warm-up and per sample of every peer, so the bar (and its
    # estimate of the time left) moves while a group is sampled in turns
    total = sum(len(_tasks(Case(m, "float64", s, False), args))
                for s in args.shapes for m in _measures(s, args))
    total *= len(args.dtypes) * len(args.zeros) * (1 + args.repeat)
    total += 0 if args.no_memory else len(args.dtypes)
    bar = _progress(total)
    records = []
    memory = []

    def save(partial):
        results = {"command": command, "machine": info, "records": records, "memory": memory,
                   "partial": partial,
                   "settings": {"repeat": args.repeat, "seed": args.seed,
                                "min_sample_seconds": MIN_SAMPLE_SECONDS,
                                "slow_call_seconds": SLOW_CALL_SECONDS}}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        return results

    try:
        # a matrix and its one-reference-row variant form one group
        groups, n_groups = {}, 0
        for shape in args.shapes:
            groups.setdefault((shape.n_rows, shape.k), []).append(shape)
        for group in groups.values():
            for dtype in args.dtypes:
                # every measure's peers, with and without zeros (and one
                # reference row), sampled in turns: "time relative to kl",
                # "zeros / none" and "reference row / full" are then as steady
                # as the floor ratio (drift over minutes cancels)
                timed = []
                for shape, zeros in ((s, z) for s in group for z in args.zeros):
                    bar.set_description_str(f"generating {dtype} {shape.label}", refresh=False)
                    p, q = peers_mod.make_inputs(shape, dtype, zeros, seed=args.seed)
                    for measure in _measures(shape, args):
                        case_records, case_timed = prepare_case(
                            Case(measure, dtype, shape, zeros), p, q, args, bar)
                        records.extend(case_records)
                        timed.extend(case_timed)
                    del p, q  # the prepared peers hold them until sampled
                # the two sides of a checked ratio next to each other within a
                # turn: per thread count and measure, klfast, its read floor
                # and numkong on each input (with and without zeros, full and
                # one reference row) in a row; the other peers after them
                timed.sort(key=lambda t: (t.peer.name not in _PAIRED, t.record["threads"],
                                          args.measures.index(t.case.measure)))
                for position, t in enumerate(timed):
                    t.record.update(group=n_groups, position=position)  # in each turn
                n_groups += 1
                sample_in_turns(timed, args.repeat, bar)
                del timed
                gc.collect()
                save(partial=True)  # an interrupted long run keeps what it measured
        if not args.no_memory:
            memory = _memory_runs(args, bar)
    finally:
        bar.close()
    _derive(records)
    info["load_average_at_end"] = _load_average()

    results = save(partial=False)
    plots = [] if args.no_plots else report.plots(results, args.out)
    text = report.markdown(results, plots)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    print(report.summary(results))
    print(f"\nreport: {os.path.join(args.out, 'report.md')}")
    bad = [r for r in records if r.get("agrees") is False]
    if bad:
        print("peers that disagree with klfast (not ranked): "
              + ", ".join(sorted({f"{r['label']} on {r['measure']} {r['dtype']} {r['shape']}"
                                  for r in bad})), file=sys.stderr)
    return 0

