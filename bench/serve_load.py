"""Batched vs one-at-a-time serving on loopback: starts `genctl serve` per setting, drives it with
`genctl.serve.loadtest`, and records rows/s, latency percentiles, 503s and server RSS.

    python bench/serve_load.py BUNDLE [--concurrency 32] [--duration 15] [--body '{"n": 1}']
        [--overload-factor 2] [--json results.json]

Settings run in order: max-batch 1 (one request per sampler call), max-batch 64 (dynamic
batching), then an open-loop overload at ``overload-factor`` × the batched throughput with a
small queue (``--max-queue 64``), where the server must shed load with 503s instead of timing out.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from genctl.serve.loadtest import load_test


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def start(bundle: str, port: int, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "genctl.cli.main", "serve", bundle, "--backend", "onnxruntime", "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # bounded: ready within 60 s
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


def mean_batch_requests(port: int) -> float:
    """Requests per sampler call over the run, from the server's own histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        values = dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines() if line.startswith("genctl_batch_requests_"))
    count = float(values.get("genctl_batch_requests_count", 0))
    return round(float(values.get("genctl_batch_requests_sum", 0)) / count, 2) if count else 0.0


def run(bundle: str, port: int, flags: list[str], body: dict, concurrency: int, duration: float,
        rate: float | None = None) -> dict:
    proc = start(bundle, port, *flags)
    try:
        before = rss_mb(proc.pid)
        r = load_test(f"http://127.0.0.1:{port}", body, concurrency=concurrency, duration_s=duration, rate=rate)
        after = rss_mb(proc.pid)
        mean_batch = mean_batch_requests(port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    out = {"flags": " ".join(flags), **r.to_json(), "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
           "mean_batch_requests": mean_batch}
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--body", default='{"n": 1, "conditions": {"label": 7}}')
    ap.add_argument("--overload-factor", type=float, default=2.0)
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--json")
    args = ap.parse_args()
    body = json.loads(args.body)
    one = run(args.bundle, args.port, ["--max-batch", "1", "--max-wait-ms", "0"], body, args.concurrency, args.duration)
    batched = run(args.bundle, args.port, ["--max-batch", "64", "--max-wait-ms", "5"], body, args.concurrency, args.duration)
    rate = args.overload_factor * batched["requests_per_s"]
    over = run(args.bundle, args.port, ["--max-batch", "64", "--max-wait-ms", "5", "--max-queue", "64", "--timeout-s", "10"],
               body, 1024, args.duration, rate=rate)
    print(f"batched / one-at-a-time rows/s: {batched['rows_per_s'] / one['rows_per_s']:.2f}x  (cpus: {os.cpu_count()})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"one_at_a_time": one, "batched": batched, "overload": over}, f, indent=2)


if __name__ == "__main__":
    main()
