"""Batch-1 tokens/s of a text / bits bundle on torch eager (1 and 2 threads) and ONNX Runtime, in one process.

    python bench/ntm_speed.py bundles/ntm-copy --cond repeats=1 --calls 20

torch eager's CPU threads sleep between the step's tiny ops; on a busy 2-core box their wake-ups cost
milliseconds per op, so the default (2 threads) understates torch there. ORT's spin instead.
"""
from __future__ import annotations

import argparse
import time

import torch

import genctl


def tokens_per_second(gen, cond: dict, calls: int, max_new: int) -> float:
    gen.generate(cond, n=1, seed=0, max_new_tokens=max_new)  # warm-up
    tokens, start = 0, time.perf_counter()
    for seed in range(calls):
        tokens += gen.generate(cond, n=1, seed=seed, max_new_tokens=max_new).meta["tokens"]
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("--cond", default="")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()
    cond = dict(c.split("=", 1) for c in args.cond.split(",") if c)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out[f"torch eager, {threads} thread{'s' * (threads > 1)}"] = tokens_per_second(
            genctl.load(args.bundle, backend="torch"), cond, args.calls, args.max_new_tokens)
    out["onnxruntime"] = tokens_per_second(genctl.load(args.bundle, backend="onnxruntime"), cond, args.calls, args.max_new_tokens)
    for name, value in out.items():
        print(f"{args.bundle}  {name:24s} {value:9.1f} tok/s   ORT/this {out['onnxruntime'] / value:6.2f}x")


if __name__ == "__main__":
    main()
