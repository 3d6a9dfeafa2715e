"""The HTTP front on loopback: real requests to a real server over a real bundle."""
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

import genctl
from genctl.serve import make_server


@pytest.fixture(scope="module")
def server(cvae_bundle):
    gen = genctl.load(cvae_bundle, backend="onnxruntime")
    srv = make_server(gen, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", gen
    srv.shutdown()
    srv.server_close()


def post(url, body):
    req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_generate_matches_the_python_api(server):
    url, gen = server
    status, out = post(url, {"conditions": {"label": 7}, "n": 3, "seed": 5})
    assert status == 200 and out["rows"] == ["label=7"] and out["shape"] == [3, 1, 8, 8]
    np.testing.assert_allclose(np.array(out["samples"]), gen.generate({"label": 7}, n=3, seed=5).data, atol=1e-4)


def test_health_and_bad_requests(server):
    url, _ = server
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        assert json.loads(r.read())["family"] == "cvae"
    status, out = post(url, {"conditions": {"label": 42}, "n": 1})
    assert status == 400 and "got 42" in out["error"]
    status, out = post(url, {"n": 0})
    assert status == 400 and "expected a positive integer" in out["error"]
