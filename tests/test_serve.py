"""The HTTP front on loopback: a real uvicorn server over a real bundle, requests over real sockets."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import genctl
from genctl.errors import GenctlError
from genctl.serve import ServeConfig, create_app, handle_generate
from genctl.serve.server import background


@pytest.fixture(scope="module")
def gen(cvae_bundle):
    with genctl.load(cvae_bundle, backend="onnxruntime") as g:
        yield g


@pytest.fixture(scope="module")
def server(gen):
    app = create_app(gen, ServeConfig(max_batch=64, max_wait_ms=2, max_rows=100, max_body=8192))
    with background(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, app


def test_generate_matches_the_python_api(server, gen):
    client, _ = server
    r = client.post("/generate", json={"conditions": {"label": 7}, "n": 3, "seed": 5})
    out = r.json()
    assert r.status_code == 200 and out["rows"] == ["label=7"] and out["shape"] == [3, 1, 8, 8]
    np.testing.assert_allclose(np.array(out["samples"]), gen.generate({"label": 7}, n=3, seed=5).data, atol=1e-4)
    png = client.post("/generate", json={"conditions": {"label": [1, 2]}, "n": 2, "format": "png"}).json()
    assert png["png_base64"].startswith("iVBORw0KGgo")  # PNG magic, base64


ASKS = [{"conditions": {"label": 7}, "n": 3, "seed": 5}, {"conditions": {"label": [0, 1]}, "n": 2, "seed": 9,
        "controls": {"temperature": 0.5}}, {"n": 1, "seed": 1}, {"conditions": {"label": "2"}, "n": 5, "seed": 5}]
ASK_ROWS = 3 + 4 + 10 + 5  # condition rows × n; no label = all 10 classes


def test_concurrent_requests_are_batched_and_answer_as_alone(gen):
    """max_batch = the rows of four requests and a long max_wait: the batch fires exactly when all
    four are queued, so they share one sampler call; each answer equals generate() alone."""
    app = create_app(gen, ServeConfig(max_batch=ASK_ROWS, max_wait_ms=60_000))
    with background(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(len(ASKS)) as pool:
            answers = list(pool.map(lambda body: client.post("/generate", json=body), ASKS))
        metrics = client.get("/metrics").text
    for body, r in zip(ASKS, answers):
        assert r.status_code == 200, r.text
        alone = gen.generate(body.get("conditions"), n=body["n"], seed=body["seed"], **body.get("controls", {}))
        np.testing.assert_allclose(np.array(r.json()["samples"]), alone.data, atol=1e-5)
    assert f"genctl_batch_rows_sum {float(ASK_ROWS)}" in metrics and "genctl_batch_rows_count 1.0" in metrics
    assert "genctl_batch_requests_sum 4.0" in metrics and 'genctl_requests_total{status="200"} 4.0' in metrics


def test_full_queue_answers_503_with_retry_after_and_slow_requests_504(gen):
    """One request waits for company (long max_wait) and fills the one-place queue: the next is
    refused at once with 503 + Retry-After, and the waiting one times out with 504."""
    app = create_app(gen, ServeConfig(max_batch=1000, max_wait_ms=60_000, max_queue=1, timeout_s=1.0))
    with background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        first: list = []
        waiter = threading.Thread(target=lambda: first.append(client.post("/generate", json={"n": 1})))
        waiter.start()
        for _ in range(400):  # bounded: the first request reaches the queue within 20 s
            if app.state.batcher.depth == 1:
                break
            time.sleep(0.05)
        refused = client.post("/generate", json={"n": 1})
        waiter.join(timeout=30)
        metrics = client.get("/metrics").text
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "queue" in refused.json()["error"]
    assert first[0].status_code == 504 and "within 1 s" in first[0].json()["error"]
    assert 'genctl_requests_total{status="503"} 1.0' in metrics and 'genctl_requests_total{status="504"} 1.0' in metrics
    assert "genctl_queue_depth 0.0" in metrics  # the timed-out request left the queue


BAD = [
    (b"{not json", 400, "invalid JSON"),
    (b"[1, 2]", 400, "expected a JSON object"),
    (b'{"n": "3"}', 400, "Request field 'n'"),
    (b'{"n": 1e400}', 400, "Request field 'n'"),
    (b'{"n": 10000000000000000000000000}', 400, "expected an integer in [1, 100]"),
    (b'{"n": 0}', 400, "expected an integer in [1, 100]"),
    (b'{"seed": -1}', 400, "Request field 'seed' | got -1"),
    (b'{"seed": 100000000000000000000000000000}', 400, "Request field 'seed'"),
    (b'{"controls": {"temperature": NaN}}', 400, "got NaN"),
    (b'{"controls": {"temperature": Infinity}}', 400, "Request field 'controls.temperature'"),
    (b'{"controls": {"steps": 5}}', 400, "Request field 'controls.steps'"),
    (b'{"conditions": {"label": 42}}', 400, "got 42"),
    (b'{"conditions": {"label": true}}', 400, "label"),
    (b'{"conditions": {"shape": 1}}', 400, "Condition 'shape'"),
    (b'{"conditions": {"label": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}, "n": 11}', 400, "at most 100"),
    (b'{"prefix": "Ma"}', 400, "Request 'prefix'"),
    (b'{"bogus": 1}', 400, "Request field 'bogus'"),
    (b'{"n": ' + b"9" * 5000 + b"}", 400, "invalid JSON"),
    (b"[" * 100_000, 413, "at most 8192"),
]


@pytest.mark.parametrize("raw,status,match", BAD, ids=range(len(BAD)))
def test_bad_requests_get_a_one_line_error(server, raw, status, match):
    client, _ = server
    r = client.post("/generate", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status and match in r.json()["error"] and "\n" not in r.json()["error"]


def test_handle_generate_validates_like_the_server(gen):
    out = handle_generate(gen, {"conditions": {"label": 3}, "n": 2, "seed": 4})
    np.testing.assert_allclose(np.array(out["samples"]), gen.generate({"label": 3}, n=2, seed=4).data, atol=1e-4)
    for body in (json.loads(raw) for raw, status, _ in BAD[1:17] if status == 400):
        with pytest.raises(GenctlError):
            handle_generate(gen, body, ServeConfig(max_rows=100))


def test_health_ready_docs_and_metrics(server):
    client, _ = server
    assert client.get("/healthz").json()["family"] == "cvae"
    assert client.get("/readyz").json() == {"ready": True}
    assert client.get("/manifest").json()["family"] == "cvae"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()["paths"]["/generate"]["post"]["requestBody"]["content"]
    assert set(schema["application/json"]["schema"]["properties"]) >= {"conditions", "n", "seed", "controls"}
    client.post("/generate", json={"n": 2, "conditions": {"label": 1}})
    text = client.get("/metrics").text
    for name in ("genctl_requests_total", "genctl_request_seconds_bucket", "genctl_batch_rows_bucket",
                 "genctl_queue_depth", "genctl_rows_total", "genctl_rows_per_second"):
        assert name in text
    assert client.get("/nope").status_code == 404


def test_loadtest_reports_what_the_server_saw(server):
    from genctl.serve.loadtest import load_test

    client, app = server
    before = app.state.metrics.requests.labels("200")._value.get()
    r = load_test(str(client.base_url), {"n": 2, "conditions": {"label": 4}}, concurrency=4, duration_s=0.5)
    served = app.state.metrics.requests.labels("200")._value.get() - before
    assert r.requests == r.ok == served > 0 and r.status == {"200": r.ok} and r.rejected == 0
    assert r.rows == 2 * r.ok and 0 < r.p50_ms <= r.p90_ms <= r.p99_ms


def test_cli_serve_on_a_busy_port_is_a_one_line_error(cvae_bundle):
    import socket

    from typer.testing import CliRunner

    from genctl.cli.main import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = CliRunner().invoke(app, ["serve", str(cvae_bundle), "--port", str(busy.getsockname()[1])])
    assert r.exit_code == 1 and "expected a free port" in r.output
