"""Prometheus metrics of one server: a private registry, so several apps in one process never clash."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from genctl.serve.batcher import BatchStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Requests by status, latency, batch sizes, queue depth and generated rows (counter + last-batch rate)."""

    def __init__(self, depth=lambda: 0, prompt_cache=None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("genctl_requests", "HTTP requests to /generate by status code", ["status"], registry=r)
        self.latency = Histogram("genctl_request_seconds", "Latency of /generate requests (queue + sampling)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("genctl_batch_rows", "Sample rows per sampler call", buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("genctl_batch_requests", "Requests merged into one sampler call",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.rows = Counter("genctl_rows", "Sample rows generated (rate() of this is rows/s)", registry=r)
        self.disconnects = Counter("genctl_client_disconnects", "Clients that closed the connection before their request body "
                                   "was read (answered 499 in the access log)", registry=r)
        self.rows_per_s = Gauge("genctl_rows_per_second", "Rows per second of sampler time in the last batch", registry=r)
        self.queue = Gauge("genctl_queue_depth", "Requests waiting for a batch", registry=r)
        self.queue.set_function(depth)
        if prompt_cache is not None:  # text-prompted models: the encode stage's cache of encoded prompts
            hits = Gauge("genctl_prompt_cache_hits", "Prompts answered from the encoded-prompt cache (no encoder run)", registry=r)
            misses = Gauge("genctl_prompt_cache_misses", "Prompts the encoder graph had to encode", registry=r)
            size = Gauge("genctl_prompt_cache_size", "Encoded prompts held (bounded LRU)", registry=r)
            hits.set_function(lambda: prompt_cache.hits)
            misses.set_function(lambda: prompt_cache.misses)
            size.set_function(lambda: len(prompt_cache))

    def batch(self, stats: BatchStats) -> None:
        """Record one sampler call (the batcher's ``on_batch``)."""
        self.batch_rows.observe(stats.rows)
        self.batch_requests.observe(stats.requests)
        self.rows.inc(stats.rows)
        if stats.seconds > 0:
            self.rows_per_s.set(stats.rows / stats.seconds)

    def request(self, status: int, seconds: float) -> None:
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
