"""`genctl serve` vs `genctl serve --triton` on loopback, driven by autocannon (npm), at several concurrencies.

    npm install --prefix /work/tools autocannon@8
    python bench/triton_load.py BUNDLE [--steps 20] [--concurrency 1,32] [--duration 15] [--autocannon-dir /work/tools]
        [--servers genctl,triton] [--triton-flags '--instances 1'] [--json bench/results/triton_load_<family>.json]

Per server: start it (``python -m genctl serve BUNDLE --backend onnxruntime``, then the same with ``--triton``;
both with their defaults: batches of up to 64 requests, 5 ms queue delay), wait until ready, warm up, then per
concurrency run autocannon (closed loop; bodies round-robin over 10 labels x 100 seeds, one row per request,
diffusion with ``steps``) against ``POST /generate`` or Triton's KServe v2 JSON ``POST /v2/models/<family>_generate/infer``.
Measured per cell: rows/s (2xx responses per second), p50/p99 latency (autocannon), the server process tree's CPU
seconds per request (utime + stime of the server and every descendant, Triton's stubs included, from /proc), and
the mean requests per model execution (genctl: its batch histogram; Triton: nv_inference_count /
nv_inference_exec_count from the metrics port).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from genctl.bundle import Bundle
from genctl.serve.triton_server import free_port

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """utime + stime of ``root`` and all its live descendants (seconds)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def get(url: str, timeout: float = 2) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode() if r.status == 200 else None
    except OSError:
        return None


class Server:
    def __init__(self, bundle: Path, triton: bool, flags: list[str] = ()):
        self.triton, self.family = triton, Bundle.load(bundle, verify=False).family
        self.port, self.grpc, self.metrics = free_port(), free_port(), free_port()
        cmd = [sys.executable, "-m", "genctl", "serve", str(bundle), "--backend", "onnxruntime", "--port", str(self.port)]
        if triton:
            cmd += ["--triton", "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics)]
        cmd += list(flags) if triton else []
        self.flags = " ".join(flags) if triton else ""
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = f"http://127.0.0.1:{self.port}" + ("/v2/health/ready" if triton else "/readyz")
        deadline = time.monotonic() + 300
        while get(ready) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"server did not become ready: {cmd}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + (f"/v2/models/{self.family}_generate/infer" if self.triton else "/generate")

    def body(self, label: int, seed: int, steps: int | None) -> dict:
        if not self.triton:
            return {"conditions": {"label": label}, "n": 1, "seed": seed, **({"controls": {"steps": steps}} if steps else {})}
        inputs = [{"name": "label", "shape": [1, 1], "datatype": "INT64", "data": [label]},
                  {"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [seed]}]
        if steps:
            inputs.append({"name": "steps", "shape": [1, 1], "datatype": "INT32", "data": [steps]})
        return {"inputs": inputs}

    def batches(self) -> tuple[float, float]:
        """(requests, executions) so far."""
        if self.triton:
            text = get(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) or ""
            value = {k: float(m[1]) if (m := re.search(rf'^{k}{{model="{self.family}_generate",version="1"}} (\S+)$', text, re.M)) else 0.0
                     for k in ("nv_inference_count", "nv_inference_exec_count")}
            return value["nv_inference_count"], value["nv_inference_exec_count"]
        text = get(f"http://127.0.0.1:{self.port}/metrics", timeout=10) or ""
        value = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("genctl_batch_requests_"))
        return float(value.get("genctl_batch_requests_sum", 0)), float(value.get("genctl_batch_requests_count", 0))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # both fronts stop cleanly on SIGTERM (--triton: the tritonserver too)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def autocannon(server: Server, bodies: list[dict], connections: int, seconds: float, tools: Path) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
    env = {**os.environ, "NODE_PATH": str(tools / "node_modules")}
    out = subprocess.run(["node", str(HERE / "autocannon_bodies.js"), server.url, f.name, str(connections), str(seconds)],
                         capture_output=True, text=True, env=env, timeout=seconds + 120, check=True)
    os.unlink(f.name)
    return json.loads(out.stdout)


def cell(server: Server, bodies: list[dict], connections: int, seconds: float, tools: Path) -> dict:
    cpu0, (req0, exec0) = tree_cpu_s(server.proc.pid), server.batches()
    r = autocannon(server, bodies, connections, seconds, tools)
    cpu1, (req1, exec1) = tree_cpu_s(server.proc.pid), server.batches()
    ok = r["2xx"]
    name = ("genctl serve --triton" if server.triton else "genctl serve") + (f" {server.flags}" if server.flags else "")
    return {"server": name, "concurrency": connections,
            "rows_per_s": round(ok / r["duration"], 1), "p50_ms": r["latency"]["p50"], "p99_ms": r["latency"]["p99"],
            "cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / max(ok, 1), 2),
            "mean_batch": round((req1 - req0) / (exec1 - exec0), 2) if exec1 > exec0 else 0.0,
            "ok": ok, "non2xx": r["non2xx"], "errors": r["errors"], "timeouts": r["timeouts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--steps", type=int, default=None, help="diffusion steps per request")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--autocannon-dir", type=Path, default=Path("/work/tools"))
    ap.add_argument("--servers", default="genctl,triton", help="which fronts, in order: genctl,triton")
    ap.add_argument("--triton-flags", default="", help="extra flags for the Triton server, e.g. '--instances 1'")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for front in args.servers.split(","):
        server = Server(args.bundle, front == "triton", args.triton_flags.split())
        try:
            bodies = [server.body(label, seed, args.steps) for seed in range(100) for label in range(10)]
            autocannon(server, bodies[:50], 4, 2, args.autocannon_dir)  # warm-up
            for c in (int(x) for x in args.concurrency.split(",")):
                rows.append({"bundle": str(args.bundle), "family": server.family, "steps": args.steps,
                             **cell(server, bodies, c, args.duration, args.autocannon_dir)})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    print("\n| bundle | server | concurrency | rows/s | p50 ms | p99 ms | server CPU ms / request | mean requests per execution | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']}{' DDIM-' + str(r['steps']) if r['steps'] else ''} | `{r['server']}` | {r['concurrency']} | {r['rows_per_s']} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['cpu_ms_per_request']} | {r['mean_batch']} | {r['non2xx'] + r['errors']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
