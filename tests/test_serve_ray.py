"""Ray Serve adapter on loopback: 2 replicas, batched answers equal generate() alone (slow: starts Ray)."""
from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import genctl
from genctl.serve import ServeConfig

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_answer_like_generate_alone(cvae_bundle):
    from genctl.serve import ray as ray_serve

    port = free_port()
    ray_serve.start(cvae_bundle, backend="onnxruntime", config=ServeConfig(max_batch=8, max_wait_ms=20), replicas=2,
                    port=port)
    try:
        bodies = [{"conditions": {"label": i % 10}, "n": 1 + i % 3, "seed": i} for i in range(12)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client, ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda b: client.post("/generate", json=b), bodies))
            bad = client.post("/generate", json={"conditions": {"label": 42}})
            health = client.get("/healthz").json()
    finally:
        ray_serve.stop()
    assert bad.status_code == 400 and "got 42" in bad.json()["error"] and health["family"] == "cvae"
    with genctl.load(cvae_bundle, backend="onnxruntime") as gen:
        for body, r in zip(bodies, answers):
            assert r.status_code == 200, r.text
            alone = gen.generate(body["conditions"], n=body["n"], seed=body["seed"])
            np.testing.assert_allclose(np.array(r.json()["samples"]), alone.data, atol=1e-5)
