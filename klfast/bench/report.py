"""report.md, the plots and the console summary of ``python -m klfast.bench``."""
import os
import statistics

PEER_NOTES = {
    "klfast": "`klfast.<measure>(P, Q, num_threads=t)` (`num_threads=None` at the default count)",
    "klfast[level]": "klfast with its kernels forced to one instruction-set level "
                     "(`--isas`; as `KLFAST_ISA=level`)",
    "read floor": "`klfast._diagnostics.read_floor`: a compiled kernel of this build that only reads "
                  "and sums the inputs once (the ceiling)",
    "scipy": "`scipy.special.rel_entr(P, Q).sum(-1)` (Jeffreys: `+ rel_entr(Q, P).sum(-1)`; "
             "entropy: `entr(P).sum(-1)`; cross-entropy: `-xlogy(P, Q).sum(-1)`; Jensen-Shannon: "
             "`scipy.spatial.distance.jensenshannon(P, Q, axis=-1) ** 2`, which normalises the "
             "rows and returns the distance, squared here)",
    "scipy.stats.entropy": "`scipy.stats.entropy(P, Q, axis=-1)` (normalises each row)",
    "numpy": "`(P * np.log(P / Q)).sum(-1)`; with zeros `np.maximum(x, eps)` inside the log "
             "(else 0/0 gives NaN); Jensen-Shannon with `m = 0.5 * (P + Q)`: "
             "`0.5 * (np.where(P > 0, P * np.log(P / m), 0) + np.where(Q > 0, Q * np.log(Q / m), "
             "0)).sum(-1)`",
    "numexpr": "`numexpr.evaluate('where(P > 0, P * log(P / Q), 0)').sum(-1)` (Jensen-Shannon: "
               "the numpy expression, `m` inline)",
    "numba": "`@njit(parallel=True, fastmath=True)` row loop, float64 accumulator, eps rule "
             "(none for Jensen-Shannon)",
    "torch": "`torch.xlogy(P, P / Q).sum(-1)` on CPU tensors sharing memory (floored with zeros)",
    "numkong": "`numkong.kld(P, Q)` (one thread, SIMD; approximate log, adds 1e-7 to every "
               "entry: checked with rtol 5e-2 only)",
}

TARGET_SHAPES = ("100000x1000", "1000000x100")
# Few classes and distributions in columns (issue 16): kl within this many
# times the read floor, all threads, each dtype.
SHAPE_TARGETS = {"20000000x2": 1.3, "10000000x10": 1.3, "3000000x32": 1.2,
                 "5000000x10:cols": 1.3, "50000x1000:cols": 1.3}

# one colour per peer; a threaded peer's single-thread run is dashed / hatched
PEER_COLORS = {
    "klfast": "#d62728", "read floor": "#7f7f7f", "scipy": "#1f77b4",
    "scipy.stats.entropy": "#aec7e8", "numpy": "#ff7f0e", "numexpr": "#2ca02c",
    "numba": "#9467bd", "torch": "#8c564b", "numkong": "#17becf",
}


ISA_COLORS = {"baseline": "#ffbb78", "avx2": "#e377c2", "avx512": "#8c1d1d"}


def _style(record, top_threads):
    one_of_many = record["threads"] == 1 and top_threads > 1 and record["label"] != record["peer"]
    peer = record["peer"]
    if peer.startswith("klfast["):  # klfast forced to one instruction-set level
        color = ISA_COLORS.get(peer[7:-1], "#bcbd22")
    else:
        color = PEER_COLORS.get(peer, "#bcbd22")
    return {"color": color,
            "linestyle": ":" if record["peer"] == "read floor" else ("--" if one_of_many else "-"),
            "hatch": "//" if one_of_many else None,
            "linewidth": 2.5 if record["peer"] == "klfast" else 1.3}


def _fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt(x, spec=".3g", suffix=""):
    return "-" if x is None else f"{x:{spec}}{suffix}"


def ratio(a, b):
    """a's time over b's (two records). When both were sampled in turns in
    one group, the median over the turns of a's sample / b's sample of the
    same turn (taken seconds apart, so the drift of a shared machine over the
    minutes of a run cancels); otherwise the ratio of the medians."""
    sa, sb = a.get("samples_s"), b.get("samples_s")
    if sa and sb and a.get("group") is not None and a.get("group") == b.get("group"):
        return statistics.median(x / y for x, y in zip(sa, sb))
    return a["median_s"] / b["median_s"]


def _index(results):
    return {(r["measure"], r["dtype"], r["shape"], r["zeros"], r["peer"], r["threads"]): r
            for r in results["records"] if "median_s" in r}


def _max_threads(results):
    return max(results["machine"]["threads_tested"])


def _cases(results):
    seen = []
    for r in results["records"]:
        key = (r["measure"], r["dtype"], r["shape"], r["zeros"])
        if key not in seen:
            seen.append(key)
    return seen


def _inputs_title(results, dtype, shape, zeros):
    label = next(r["shape_label"] for r in results["records"] if r["shape"] == shape)
    return f"{dtype} · {label}" + (" · 10% zeros" if zeros else "")


def _case_title(results, key):
    measure, dtype, shape, zeros = key
    return f"{measure} · {_inputs_title(results, dtype, shape, zeros)}"


def key_ratios(results):
    """Rows of the key-ratio table: klfast at the top thread count and at 1."""
    idx = _index(results)
    n = _max_threads(results)
    rows = []
    for key in _cases(results):
        top = idx.get(key + ("klfast", n))
        one = idx.get(key + ("klfast", 1))
        if top is None:
            continue
        nk = idx.get(key + ("numkong", 1))
        rows.append({
            "case": _case_title(results, key),
            "ns_per_element": top["ns_per_element"],
            "time": top["median_s"],
            "gb_per_s": top["gb_per_s"],
            "vs_scipy": top.get("speedup_vs_scipy"),
            "x_floor": top.get("x_read_floor"),
            "one_vs_scipy": one.get("speedup_vs_scipy") if one else None,
            "one_x_floor": one.get("x_read_floor") if one else None,
            "thread_speedup": ratio(one, top) if one and n > 1 else None,
            "one_vs_numkong": ratio(nk, one) if nk and one else None,
        })
    return rows


def relative_to_kl(results):
    """klfast's time for each other measure over its kl time on the same inputs
    with the same threads: (measures, rows); empty without kl in the run."""
    idx = _index(results)
    others = [m for m in dict.fromkeys(r["measure"] for r in results["records"]) if m != "kl"]
    rows = []
    for (measure, dtype, shape, zeros, peer, threads), kl in idx.items():
        if measure != "kl" or peer != "klfast":
            continue
        ratios = {}
        for m in others:
            r = idx.get((m, dtype, shape, zeros, "klfast", threads))
            if r:
                ratios[m] = ratio(r, kl)
        if ratios:
            rows.append({"inputs": _inputs_title(results, dtype, shape, zeros),
                         "threads": threads, "ratios": ratios})
    measured = [m for m in others if any(m in r["ratios"] for r in rows)]
    return measured, rows


def targets(results):
    """The performance checks klfast is held to (see benchmarks/README.md),
    for the cases this run covered."""
    idx = _index(results)
    n = _max_threads(results)
    out = []

    def add(target, case, measured, required, met):
        out.append({"target": target, "case": case, "measured": measured,
                    "required": required, "met": met})

    for shape in TARGET_SHAPES:
        for dtype, floor_max, speed_min, t in (("float64", 1.25, 25, "1"), ("float32", 1.2, 60, "2")):
            r = idx.get(("kl", dtype, shape, False, "klfast", n))
            if r and "x_read_floor" in r and "speedup_vs_scipy" in r:
                add(t, f"kl {dtype} {shape}, {n} thr",
                    f"{r['x_read_floor']:.2f}x floor, {r['speedup_vs_scipy']:.1f}x scipy",
                    f"<= {floor_max}x floor, >= {speed_min}x scipy",
                    r["x_read_floor"] <= floor_max and r["speedup_vs_scipy"] >= speed_min)
        r = idx.get(("kl", "float64", shape, False, "klfast", 1))
        if r and "speedup_vs_scipy" in r:
            nk = idx.get(("kl", "float64", shape, False, "numkong", 1))
            measured = f"{r['speedup_vs_scipy']:.1f}x scipy"
            met = r["speedup_vs_scipy"] >= 14
            if nk:
                vs_nk = ratio(nk, r)
                measured += f", {vs_nk:.2f}x numkong"
                met = met and vs_nk > 1
            add("3", f"kl float64 {shape}, 1 thr", measured, ">= 14x scipy, faster than numkong", met)
        for dtype in ("float64", "float32"):
            for threads in sorted({1, n}):
                z = idx.get(("kl", dtype, shape, True, "klfast", threads))
                nz = idx.get(("kl", dtype, shape, False, "klfast", threads))
                if z and nz:
                    x = ratio(z, nz)
                    add("4", f"kl {dtype} {shape}, {threads} thr: 10% zeros / none",
                        f"{x:.2f}x", "<= 1.15x", x <= 1.15)
        for dtype in ("float64", "float32"):
            base = idx.get(("kl", dtype, shape, False, "klfast", n))
            for measure in ("jeffreys", "entropy", "cross_entropy"):
                r = idx.get((measure, dtype, shape, False, "klfast", n))
                if base and r:
                    x = ratio(r, base)
                    add("5", f"{measure} / kl, {dtype} {shape}, {n} thr", f"{x:.2f}x",
                        "<= 1.1x", x <= 1.1)
    for (measure, dtype, shape, zeros, peer, threads), r in idx.items():
        if measure == "jensen_shannon":
            continue  # the checks cover the other measures
        if peer == "klfast" and shape.endswith(":ref") and threads == n and not zeros:
            full = idx.get((measure, dtype, shape[:-4], zeros, peer, threads))
            if full:
                x = ratio(r, full) * full["elements"] / r["elements"]
                add("5", f"{measure} {dtype} one reference row vs full {shape[:-4]}",
                    f"{x:.2f}x time/element", "<= 1x", x <= 1.0)
    for shape, floor_max in SHAPE_TARGETS.items():
        for dtype in ("float64", "float32"):
            r = idx.get(("kl", dtype, shape, False, "klfast", n))
            if r and "x_read_floor" in r:
                add("9", f"kl {dtype} {shape}, {n} thr", f"{r['x_read_floor']:.2f}x floor",
                    f"<= {floor_max}x floor", r["x_read_floor"] <= floor_max)
    tiny = idx.get(("kl", "float64", "1x11", False, "klfast", n))
    scipy_tiny = idx.get(("kl", "float64", "1x11", False, "scipy", 1))
    if tiny:
        measured = f"{tiny['median_s'] * 1e6:.2f} µs"
        met = tiny["median_s"] <= 1e-6
        if scipy_tiny:
            measured += f" (scipy {scipy_tiny['median_s'] * 1e6:.2f} µs)"
            met = met and ratio(tiny, scipy_tiny) < 1
        add("7", "kl float64 1 x 11, one call", measured, "<= 1 µs, faster than scipy", met)
    for m in results.get("memory", []):
        if "error" in m:
            add("8", f"peak memory kl {m['dtype']} {m['n_rows']}x{m['k']}", m["error"], "", False)
            continue
        add("8", f"peak memory kl {m['dtype']} {m['n_rows']}x{m['k']}",
            f"{(m['peak'] - m['baseline']) / 2**20:,.0f} MiB over baseline "
            f"({m['overhead']:.3f}x inputs + output)", "<= 1.05x inputs + output", m["ok"])
    return out


def summary_table(results, measure="kl", shape=None):
    """Markdown table of every peer on one shape, one column pair per dtype:
    the README's benchmark table. ``shape`` defaults to 100,000 x 1,000 when
    measured, else the largest full-matrix shape."""
    timed = [r for r in results["records"] if "median_s" in r and r["measure"] == measure
             and not r["zeros"]]
    if shape is None:
        keys = {r["shape"] for r in timed}
        full = [r for r in timed if not (r["ref_row"] or r.get("cols"))]
        if TARGET_SHAPES[0] in keys:
            shape = TARGET_SHAPES[0]
        elif full:
            shape = max(full, key=lambda r: r["elements"])["shape"]
        else:
            return ""
    rows = [r for r in timed if r["shape"] == shape]
    if not rows:
        return ""
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    order = list(PEER_COLORS)
    ranked = sorted(rows, key=lambda r: (order.index(r["peer"]) if r["peer"] in order
                                         else len(order), -r["threads"]))
    labels = list(dict.fromkeys(r["label"] for r in ranked))
    head = "| peer |" + "".join(f" {d} ns/element | {d} vs scipy |" for d in dtypes)
    lines = [head, "|---|" + "---:|---:|" * len(dtypes)]
    for label in labels:
        cells = []
        for d in dtypes:
            r = next((r for r in rows if r["label"] == label and r["dtype"] == d), None)
            if r is None:
                cells += ["-", "-"]
            elif r.get("agrees") is False:
                cells += [_fmt(r["ns_per_element"]), "*disagrees*"]
            else:
                cells += [_fmt(r["ns_per_element"]), _fmt(r.get("speedup_vs_scipy"), ".1f", "x")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    title = rows[0]["shape_label"]
    return f"{measure}, {title}, rows summing to 1\n\n" + "\n".join(lines)


def markdown(results, plots):
    m = results["machine"]
    n = _max_threads(results)
    lines = ["# klfast benchmark report", "",
             f"Command: `{results['command']}`  ", f"Date: {m['date']}", ""]
    if results.get("partial"):
        lines += ["**Partial results**: the run was interrupted; only the cases below were "
                  "measured.", ""]

    lines += ["## Machine", ""]
    mem = f", {m['memory_bytes'] / 2**30:.1f} GiB RAM" if m.get("memory_bytes") else ""
    lines.append(f"- CPU: {m['cpu']} ({m['cpus_usable']} usable{mem})")
    lines.append(f"- Platform: {m['platform']}, {m['libc']}")
    cfg = m["klfast_config"]
    lines.append("- klfast: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    lines.append(f"- Threads tested: {', '.join(map(str, m['threads_tested']))} "
                 "(single-threaded peers run once)")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v))
    missing = [k for k, v in m["versions"].items() if not v]
    if missing:
        lines.append(f"- Not installed (skipped): {', '.join(missing)}")
    load = (m.get("load_average_at_start"), m.get("load_average_at_end"))
    if load[0] is not None:
        busy = load[0] > max(1.0, 0.5 * m["cpus_usable"])  # before this run started
        lines.append(f"- Load average (1 min) at start / end: {load[0]} / {load[1]}"
                     + (" — the machine was busy: absolute times are inflated, ratios less so"
                        if busy else ""))
    if m["environment"]:
        lines.append("- Environment: " + ", ".join(f"{k}={v}" for k, v in m["environment"].items()))
    s = results["settings"]
    lines += [f"- Timing: median of {s['repeat']} samples after one warm-up call, the peers "
              f"of every measure on one shape (and its one-reference-row variant) and dtype, with and "
              f"without zeros, sampled in turns "
              f"(at most 3 samples for calls over "
              f"{s['slow_call_seconds']} s; calls under "
              f"{s['min_sample_seconds'] * 1e3:.0f} ms are looped); within a turn klfast, "
              f"its read floor and numkong run side by side for every input and measure. "
              f"Every ratio of two peers of one group is the median over the turns of the "
              f"ratio of their samples in the same turn (the drift of a shared machine over "
              f"minutes cancels); inputs: rows normalised to sum 1, seed {s['seed']}", ""]

    rows = key_ratios(results)
    if rows:
        lines += ["## Key ratios (klfast)", "",
                  f"Speed-up = scipy time / klfast time; floor ratio = klfast time / read-floor "
                  f"time with the same threads (1.0 = as fast as reading the inputs).", "",
                  f"| case | klfast time ({n} thr) | ns/element | GB/s | speed-up vs scipy | "
                  f"÷ read floor | 1 thr: speed-up vs scipy | 1 thr ÷ read floor | "
                  f"{n} thr vs 1 thr | 1 thr: speed-up vs numkong |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(
                f"| {r['case']} | {_fmt_time(r['time'])} | {_fmt(r['ns_per_element'])} | {_fmt(r['gb_per_s'], '.1f')} | "
                f"{_fmt(r['vs_scipy'], '.1f', 'x')} | {_fmt(r['x_floor'], '.2f', 'x')} | "
                f"{_fmt(r['one_vs_scipy'], '.1f', 'x')} | {_fmt(r['one_x_floor'], '.2f', 'x')} | "
                f"{_fmt(r['thread_speedup'], '.2f', 'x')} | {_fmt(r['one_vs_numkong'], '.2f', 'x')} |")
        lines.append("")

    measures, rows = relative_to_kl(results)
    if rows:
        lines += ["## klfast: time relative to kl", "",
                  "klfast's time for each measure / its kl time on the same inputs with the same "
                  "threads (1.00x = as fast as kl).", "",
                  "| inputs | threads | " + " | ".join(measures) + " |",
                  "|---|---:|" + "---:|" * len(measures)]
        for r in rows:
            lines.append(f"| {r['inputs']} | {r['threads']} | "
                         + " | ".join(_fmt(r["ratios"].get(m), ".2f", "x") for m in measures)
                         + " |")
        lines.append("")

    table = summary_table(results)
    if table:
        lines += ["## Summary table (for the README)", "", table, ""]

    goals = targets(results)
    if goals:
        lines += ["## Performance checks covered by this run", "",
                  "klfast is timed as users call it, so each call allocates its result: with "
                  "few classes per row the first writes into that new memory (page faults, "
                  "zeroing) can cost as much as the scoring. `benchmarks/out_reuse.py` "
                  "measures that cost; `benchmarks/shapes.py` times the kernels writing into "
                  "a reused `out=`.", "",
                  "| # | case | measured | required | met |", "|---|---|---|---|---|"]
        for g in goals:
            lines.append(f"| {g['target']} | {g['case']} | {g['measured']} | {g['required']} | "
                         f"{'yes' if g['met'] else '**no**'} |")
        lines.append("")

    lines += ["## All results", "",
              "ns/element = median time / (rows x row length); GB/s = bytes of input read once / "
              "median time; max rel. err versus the scipy formula evaluated in float64 (for "
              "jensen_shannon the numpy one: scipy's renormalises and takes a square root). "
              "A peer marked *disagrees* did not match klfast (rtol 1e-9 float64, 1e-4 float32) "
              "and is not ranked.", ""]
    by_case = {}
    for r in results["records"]:
        by_case.setdefault((r["measure"], r["dtype"], r["shape"], r["zeros"]), []).append(r)
    for key, group in by_case.items():
        lines += [f"### {_case_title(results, key)}", "",
                  "| peer | threads | time/call | ns/element | GB/s | speed-up vs scipy | "
                  "÷ read floor | max rel. err |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in group:
            if "median_s" not in r:
                reason = r.get("skipped") or r.get("error", "")
                lines.append(f"| {r['peer']} | {r['threads']} | skipped: {reason} | | | | | |")
                continue
            speed = _fmt(r.get("speedup_vs_scipy"), ".1f", "x")
            if r.get("agrees") is False:
                speed = "*disagrees*"
            lines.append(
                f"| {r['peer']} | {r['threads']} | {_fmt_time(r['median_s'])} | "
                f"{_fmt(r['ns_per_element'])} | {_fmt(r['gb_per_s'], '.1f')} | {speed} | "
                f"{_fmt(r.get('x_read_floor'), '.2f', 'x')} | {_fmt(r.get('max_rel_err'), '.1e')} |")
        lines.append("")

    memory = results.get("memory") or []
    if memory:
        lines += ["## Peak memory (one kl call in a fresh process)", "",
                  "| dtype | shape | baseline | inputs + output | peak | peak - baseline | "
                  "allowed (+5%) | met |", "|---|---|---:|---:|---:|---:|---:|---|"]
        mib = 2 ** 20
        for x in memory:
            if "error" in x:
                lines.append(f"| {x['dtype']} | {x['n_rows']:,} x {x['k']:,} | {x['error']} |"
                             " | | | | |")
                continue
            lines.append(
                f"| {x['dtype']} | {x['n_rows']:,} x {x['k']:,} | {x['baseline'] / mib:,.0f} MiB | "
                f"{(x['inputs'] + x['output']) / mib:,.1f} MiB | {x['peak'] / mib:,.1f} MiB | "
                f"{(x['peak'] - x['baseline']) / mib:,.1f} MiB | "
                f"{(x['bound'] - x['baseline']) / mib:,.1f} MiB | {'yes' if x['ok'] else '**no**'} |")
        lines.append("")

    if plots:
        lines += ["## Plots", ""]
        for title, name in plots:
            lines += [f"![{title}]({name})", ""]

    lines += ["## How each peer is called", ""]
    for name, note in PEER_NOTES.items():
        lines.append(f"- **{name}**: {note}")
    lines.append("")
    return "\n".join(lines)


def summary(results):
    """A short plain-text table for the terminal."""
    rows = key_ratios(results)
    n = _max_threads(results)
    out = [f"{'case':<52} {'time':>9} {'ns/el':>7} {'x scipy':>8} {'/floor':>7} "
           f"{'1thr x scipy':>12} {str(n) + 'thr/1thr':>9}"]
    for r in rows:
        out.append(f"{r['case']:<52} {_fmt_time(r['time']):>9} {_fmt(r['ns_per_element']):>7} "
                   f"{_fmt(r['vs_scipy'], '.1f', 'x'):>8} {_fmt(r['x_floor'], '.2f', 'x'):>7} "
                   f"{_fmt(r['one_vs_scipy'], '.1f', 'x'):>12} "
                   f"{_fmt(r['thread_speedup'], '.2f', 'x'):>9}")
    return "\n".join(out)


def plots(results, out_dir):
    """PNG plots; returns [(title, file name)]. Skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    ok = [r for r in results["records"] if "median_s" in r and r.get("agrees") is not False]
    combos = []
    for r in ok:
        if (r["measure"], r["dtype"]) not in combos:
            combos.append((r["measure"], r["dtype"]))
    for measure, dtype in combos:
        rs = [r for r in ok if r["measure"] == measure and r["dtype"] == dtype]
        # time per element versus row length: full matrices large enough to
        # measure throughput (not call overhead)
        lines = [r for r in rs if not (r["ref_row"] or r.get("cols")) and r["elements"] >= 10_000]
        zeros = not any(not r["zeros"] for r in lines)
        lines = [r for r in lines if r["zeros"] == zeros]
        if lines:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            top = _max_threads(results)
            for label in dict.fromkeys(r["label"] for r in lines):
                mine = [r for r in lines if r["label"] == label]
                st = _style(mine[0], top)
                pts = sorted((r["k"], r["ns_per_element"]) for r in mine)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label,
                        color=st["color"], linestyle=st["linestyle"], linewidth=st["linewidth"])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("row length k (elements per distribution)")
            ax.set_ylabel("ns per element (lower is better)")
            ax.set_title(f"{measure}, {dtype}" + (", 10% zeros" if zeros else ""))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            name = f"ns_per_element_{measure}_{dtype}.png"
            fig.savefig(os.path.join(out_dir, name), dpi=110, bbox_inches="tight")
            plt.close(fig)
            made.append((f"{measure} {dtype}: ns per element versus row length", name))
        bars = [r for r in rs if "speedup_vs_scipy" in r and r["peer"] not in ("scipy", "read floor")]
        if bars:
            groups = list(dict.fromkeys((r["shape"], r["zeros"]) for r in bars))
            labels = list(dict.fromkeys(r["label"] for r in bars))
            width = 0.8 / len(labels)
            fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(groups)), 4.5))
            top = _max_threads(results)
            for i, label in enumerate(labels):
                st = _style(next(r for r in bars if r["label"] == label), top)
                xs, ys = [], []
                for g, (shape, z) in enumerate(groups):
                    r = next((r for r in bars if r["label"] == label and r["shape"] == shape
                              and r["zeros"] == z), None)
                    if r:
                        xs.append(g + (i - (len(labels) - 1) / 2) * width)
                        ys.append(r["speedup_vs_scipy"])
                ax.bar(xs, ys, width, label=label, color=st["color"], hatch=st["hatch"],
                       edgecolor="white" if st["hatch"] else None, linewidth=0)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([s.replace(":ref", "\n1 ref row") + ("\nzeros" if z else "")
                                for s, z in groups], fontsize=8)
            ax.set_ylabel("speed-up versus scipy (higher is better)")
            ax.set_title(f"{measure}, {dtype}")
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            name = f"speedup_{measure}_{dtype}.png"
            fig.savefig(os.path.join(out_dir, name), dpi=110, bbox_inches="tight")
            plt.close(fig)
            made.append((f"{measure} {dtype}: speed-up versus scipy", name))
    return made
