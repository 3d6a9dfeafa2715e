"""Load generator for ``genctl serve``: closed loop (C workers) or open loop (R requests/s).

Closed loop: ``concurrency`` workers each send the next request when the last one answered, which
measures throughput at that concurrency. Open loop (``rate``): requests start on a fixed schedule
whether or not earlier ones answered (at most ``concurrency`` in flight on the client), which is
how overload looks from outside: past saturation the server must answer 503, not hang.
Every request carries its own seed, so no two are the same.
"""
from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """Outcome of one run: counts by status, achieved rows/s and latency percentiles of 200s (ms)."""

    url: str
    concurrency: int
    rate: float | None
    seconds: float
    requests: int
    ok: int
    rows: int
    rows_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    status: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """503 answers (the server's backpressure)."""
        return self.status.get("503", 0)

    def to_json(self) -> dict:
        return {**asdict(self), "rejected_503": self.rejected}


class _Run:
    def __init__(self, body: dict):
        self.body, self.next_seed = body, 0
        self.latencies: list[float] = []
        self.status: Counter = Counter()
        self.rows = 0

    def next_body(self) -> dict:
        body = copy.deepcopy(self.body)
        body["seed"] = self.next_seed
        self.next_seed += 1
        return body

    async def one(self, client) -> None:
        start = time.perf_counter()
        try:
            r = await client.post("/generate", json=self.next_body())
        except Exception as exc:  # noqa: BLE001  (a refused or dropped connection is a result, not a crash)
            self.status[type(exc).__name__] += 1
            return
        self.status[str(r.status_code)] += 1
        if r.status_code == 200:
            self.latencies.append(time.perf_counter() - start)
            out = r.json()
            self.rows += len(out["rows"]) * out["n"]


async def _closed(run: _Run, client, concurrency: int, until: float) -> None:
    async def worker():
        while time.perf_counter() < until:
            await run.one(client)
    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _open(run: _Run, client, concurrency: int, rate: float, until: float) -> None:
    gate = asyncio.Semaphore(concurrency)
    tasks, start, i = [], time.perf_counter(), 0

    async def fire():
        async with gate:
            await run.one(client)
    while True:
        due = start + i / rate
        if due >= until:
            break
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(fire()))
        i += 1
    await asyncio.gather(*tasks)


async def _load(url: str, body: dict, concurrency: int, duration_s: float, rate: float | None,
                timeout_s: float) -> LoadResult:
    import httpx

    run = _Run(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        start = time.perf_counter()
        until = start + duration_s
        if rate:
            await _open(run, client, concurrency, rate, until)
        else:
            await _closed(run, client, concurrency, until)
        seconds = time.perf_counter() - start
    lat = np.array(run.latencies or [float("nan")]) * 1000
    p50, p90, p99 = (float(np.percentile(lat, q)) for q in (50, 90, 99))
    total = sum(run.status.values())
    return LoadResult(url=url, concurrency=concurrency, rate=rate, seconds=seconds, requests=total, ok=len(run.latencies),
                      rows=run.rows, rows_per_s=run.rows / seconds, requests_per_s=len(run.latencies) / seconds,
                      p50_ms=p50, p90_ms=p90, p99_ms=p99, status=dict(sorted(run.status.items())))


def load_test(url: str, body: dict | None = None, *, concurrency: int = 32, duration_s: float = 10.0,
              rate: float | None = None, timeout_s: float = 60.0) -> LoadResult:
    """Drive ``POST {url}/generate`` for ``duration_s`` seconds; requests still in flight are awaited."""
    return asyncio.run(_load(url.rstrip("/"), body or {"n": 1}, concurrency, duration_s, rate, timeout_s))
