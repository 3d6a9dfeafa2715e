"""Memory drift torch vs ONNX Runtime along greedy repeat-copy runs of a bits bundle (BENCHMARKS.md, ntm).

    python bench/ntm_drift.py bundles/ntm-repeat-copy
"""
import sys

import numpy as np

import genctl

b = sys.argv[1]
t = genctl.load(b, backend="torch").backend; o = genctl.load(b, backend="onnxruntime").backend
bundle = t.bundle; sec = bundle.sampler; spec = bundle.graphs["step"]
rng = np.random.default_rng(0)
for rep, L in ((0, 10), (4, 10), (4, 16)):
    prompt = [1] + list(4 + rng.integers(0, 256, L)) + [3]
    res = []
    for be in (t, o):
        st = {x.name: np.zeros(x.concrete({"batch": 1}), dtype=x.dtype) for x in spec.inputs if x.role == "state"}
        tok, toks, mem = prompt[0], [], []
        for i in range(100):
            out = be.run("step", {"token": np.array([tok]), **st, "repeats": np.array([rep])})
            st = {inp: np.asarray(out[k]) for k, inp in sec["feeds_back"].items()}
            lg = np.asarray(out["logits"], dtype=np.float64)[0]; lg[[0, 1, 3]] = -np.inf
            p = int(lg.argmax()); toks.append(p); mem.append(st["memory"].copy())
            tok = prompt[i + 1] if i + 1 < len(prompt) else p
        res.append((toks, mem))
    eos = next((i for i, x in enumerate(res[0][0]) if x == 2 and i >= len(prompt) - 1), None)
    diff = [float(np.abs(a - b).max()) for a, b in zip(res[0][1], res[1][1])]
    first = next((i for i, (a, b) in enumerate(zip(*[r[0] for r in res])) if a != b), None)
    at_eos = f"{diff[eos]:.2e}" if eos is not None else "-"
    print(f"repeats={rep + 1} L={L}: EOS at step {eos}; memory diff at EOS {at_eos}, at 50 {diff[49]:.2e}, "
          f"at 100 {diff[99]:.2e}; first differing token step {first}")
