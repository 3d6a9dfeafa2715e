"""Bit error of bit-vector models (``ntm`` on copy / repeat copy) and the trace of their heads.

``evaluate_bits`` generates (greedy) through the bundle's own sampler for random inputs of the
training lengths (1..10) and of longer ones (11..20, capped at the model's ``max_input``), every
repeat count, and compares the output with the input written that many times: the bit error is
wrong bits / expected bits, a missing vector counting all its bits wrong (an extra one is ignored
but the end marker is then wrong); ``end_marker`` is the share of sequences that end exactly after
``L x R`` vectors.

``head_trace`` runs one example through the exported ``step`` graph on the generator's backend and
collects the read and write weightings (state outputs of the graph) at every step, for the
``genctl eval --plot heads.png`` picture (``genctl/render/heads.py``).
"""
from __future__ import annotations

import numpy as np

from genctl.vocab import bit_tokens


def random_bits(rng: np.random.Generator, length: int, width: int) -> str:
    tokens = bit_tokens(width)
    return " ".join(tokens[v] for v in rng.integers(0, 2 ** width, size=length))


def score(text: str, prefix: str, repeats: int) -> tuple[int, int, bool]:
    """``(wrong bits, expected bits, end marker right)`` of one generated ``input | output`` text."""
    want = prefix.split() * repeats
    got = text.split("|", 1)[1].split()
    wrong = sum(sum(a != b for a, b in zip(w, g)) for w, g in zip(want, got)) + sum(len(w) for w in want[len(got):])
    return wrong, sum(len(w) for w in want), len(got) == len(want)


def evaluate_bits(generator, n: int = 1000, seed: int = 0, buckets: tuple | None = None) -> dict:
    """Bit error (%) per length bucket and repeat count over ``n`` generated sequences in all (greedy)."""
    bundle = generator.bundle
    bits, ds = bundle.info["bits"], bundle.manifest.get("dataset", {})
    width, longest = int(bits["width"]), int(bits["max_input"])
    cond = bundle.conditions.conditions[0]
    buckets = buckets or (tuple(ds.get("lengths", (1, 10))), tuple(ds.get("long_lengths", (11, 20))))
    buckets = [(lo, min(hi, longest)) for lo, hi in buckets if lo <= longest]
    per = max(1, n // (len(buckets) * len(cond.names)))
    rng = np.random.default_rng(seed)
    report: dict = {"n_per_length_and_repeats": per, "seed": seed}
    for lo, hi in buckets:
        key = f"lengths {lo}-{hi}"
        wrong = total = ends = 0
        by_repeats = {}
        for name in cond.names:
            w_r = t_r = 0
            for _ in range(per):
                prefix = random_bits(rng, int(rng.integers(lo, hi + 1)), width)
                repeats = int(name)
                text = generator.generate({cond.name: name}, n=1, seed=seed, prefix=prefix, temperature=0.0,
                                          max_new_tokens=len(prefix.split()) * repeats + 1).texts[0]
                w, t, end = score(text, prefix, repeats)
                w_r, t_r, ends = w_r + w, t_r + t, ends + end
            by_repeats[name] = round(100.0 * w_r / t_r, 3)
            wrong, total = wrong + w_r, total + t_r
        report[key] = {"bit_error_%": round(100.0 * wrong / total, 3), "end_marker_%": round(100.0 * ends / (per * len(cond.names)), 1),
                       **({f"repeats {k}": v for k, v in by_repeats.items()} if len(by_repeats) > 1 else {})}
    example = random_bits(np.random.default_rng(seed), min(5, longest), width)
    report["example"] = generator.generate({cond.name: cond.names[-1]}, n=1, seed=seed, prefix=example, temperature=0.0).texts[0]
    return report


def head_trace(generator, prefix: str, condition: int) -> dict:
    """One greedy run through the ``step`` graph: input and output bits per step and, for a model
    with memory, the write and read weightings after every step (memory row x step)."""
    bundle, backend = generator.bundle, generator.backend
    section, bits = bundle.sampler, bundle.info["bits"]
    width, vocab = int(bits["width"]), list(bundle.info["vocab"])
    first, eos = vocab.index("0" * width), int(section["eos"])
    spec = bundle.graphs[section["graphs"]["step"]]
    ids = [vocab.index(t) for t in prefix.split()]
    prompt = [int(bundle.info["special_tokens"]["bos"]), *ids, *section.get("prompt_suffix", [])]
    budget = len(ids) * int(bundle.conditions.conditions[0].names[condition]) + 1
    cond = {bundle.conditions.conditions[0].name: np.array([condition], dtype=np.int64)}
    state = {t.name: np.zeros(t.concrete({"batch": 1}), dtype=t.dtype) for t in spec.inputs if t.role == "state"}
    banned = sorted(set(int(v) for v in bundle.info["special_tokens"].values()) - {eos})
    steps, token, out_tokens = [], prompt[0], []
    for i in range(len(prompt) + budget - 1):
        out = backend.run(section["graphs"]["step"], {section["token_input"]: np.array([token], dtype=np.int64), **state, **cond})
        state = {inp: np.asarray(out[o]) for o, inp in section["feeds_back"].items()}
        steps.append({k: state[k][0].copy() for k in ("w_write", "w_read") if k in state})
        logits = np.asarray(out[section["logits_output"]], dtype=np.float64)[0]
        logits[banned] = -np.inf
        pick = int(logits.argmax())
        if i + 1 < len(prompt):
            token = prompt[i + 1]
        else:
            out_tokens.append(pick)
            if pick == eos:
                break
            token = pick
    def as_bits(tokens):  # (width, vectors)
        return np.array([[int(c) for c in vocab[t]] for t in tokens if t >= first], dtype=np.float32).reshape(-1, width).T

    trace = {"input": as_bits(ids), "output": as_bits([t for t in out_tokens if t != eos]),
             "ended": bool(out_tokens and out_tokens[-1] == eos), "steps": len(steps), "prompt_steps": len(prompt)}
    for k in ("w_write", "w_read"):
        if steps and k in steps[0]:
            trace[k] = np.stack([s[k] for s in steps], axis=1)  # (N, steps)
    return trace
