"""Peak memory of one call, measured in a fresh subprocess.

The child imports numpy and klfast, makes one small multi-threaded call (so
the pool's threads and their stacks exist), resets the kernel's high-water
mark and records its resident set size as the *baseline*, allocates the inputs, makes the call once and reports its
peak resident set size (``VmHWM``; ``ru_maxrss`` where /proc is missing). A
call that allocates no input-sized temporary peaks at about
``baseline + inputs + output``; the bound is that plus 5 % (SLACK) of inputs +
output, counted from the resident size just before the call when making the
inputs left more behind.

Used by ``benchmarks/test_memory.py`` and ``python -m klfast.bench``.
"""
import json
import subprocess
import sys
import tempfile

SLACK = 0.05  # the bound: peak <= baseline + (inputs + output) * (1 + SLACK)

_CHILD = r"""
import json, resource, sys
import numpy as np

def status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss

n_rows, k, dtype, measure, threads, ref_row, impl, form = json.loads(sys.argv[1])
dtype = np.dtype(dtype)
threads = threads or None
if impl == "klfast":
    import klfast
    fn = getattr(klfast, measure)
    if measure == "entropy":
        call = lambda p, q: fn(p, num_threads=threads, input=form)
    else:
        call = lambda p, q: fn(p, q, num_threads=threads, input=form)
elif impl == "scipy":  # the control: rel_entr allocates an input-sized temporary
    from scipy.special import rel_entr
    call = lambda p, q: rel_entr(p, q).sum(axis=-1)
else:
    raise SystemExit(f"unknown impl {impl}")

rng = np.random.default_rng(0)  # numpy.random loads lazily: before the baseline
warm = np.full((256, 1024), 1.0 / 1024, dtype=dtype)  # also valid logits
call(warm, warm)
del warm
# Reset the high-water mark to the current RSS, so transient import memory
# does not count (Linux >= 4.0); elsewhere the baseline is the peak so far.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = status_kib("VmRSS") * 1024
except OSError:
    baseline = status_kib("VmHWM") * 1024

p = np.empty((n_rows, k), dtype=dtype)
q = np.empty((1 if ref_row else n_rows, k), dtype=dtype)
if form == "logits":  # normal logits, made in float32 a block of rows at a time
    step = max(1, (1 << 16) // k)
    for x in (p, q):
        for r0 in range(0, len(x), step):
            x[r0:r0 + step] = rng.standard_normal(x[r0:r0 + step].shape, dtype=np.float32) * 3
else:
    rng.random(out=p, dtype=dtype)
    rng.random(out=q, dtype=dtype)
    p /= p.sum(axis=1, keepdims=True)  # rows are distributions (in place: no temporary)
    q /= q.sum(axis=1, keepdims=True)
if ref_row:
    q = q[0]
before = status_kib("VmHWM") * 1024
result = call(p, q)
peak = status_kib("VmHWM") * 1024
print(json.dumps({"baseline": baseline, "inputs": p.nbytes + q.nbytes,
                  "output": result.nbytes, "before_call": before, "peak": peak}))
"""


def peak_memory(n_rows, k, dtype="float64", measure="kl", threads=None, ref_row=False,
                impl="klfast", timeout=600, form="probs"):
    """Run one call in a subprocess; a dict with ``baseline``, ``inputs``,
    ``output``, ``before_call``, ``peak`` (bytes), ``bound`` and ``ok`` (peak <= bound).
    ``form``: the inputs' form (klfast's ``input=``): "probs" (rows of
    random probabilities) or "logits" (normal logits, e.g. float16)."""
    arg = json.dumps([n_rows, k, str(dtype), measure, threads or 0, bool(ref_row), impl, form])
    # run outside any source checkout: "-c" puts the working directory first on
    # sys.path, where an uncompiled ./klfast would shadow the installed one
    done = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"peak-memory child failed ({done.returncode}):\n{done.stderr}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    needed = info["inputs"] + info["output"]
    # what making the inputs left resident (the allocator's freed blocks, at
    # most a few MiB) is not the call's: the call may add its output and the slack
    start = max(info["baseline"] + info["inputs"], info["before_call"])
    info["bound"] = int(start + info["output"] + needed * SLACK)
    info["overhead"] = (info["peak"] - info["baseline"]) / needed  # 1.0: no temporaries
    info["ok"] = info["peak"] <= info["bound"]
    info.update(n_rows=n_rows, k=k, dtype=str(dtype), measure=measure, threads=threads,
                ref_row=bool(ref_row), impl=impl, form=form)
    return info
