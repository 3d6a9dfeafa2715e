"""What a new user tripped on: each case fails in one line that names its cause, before the long work.

The models live in this file (importable as ``test_new_user:<Class>``) and are tiny on purpose.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import genctl
from genctl import progress
from genctl.byo import Diffusion, NextToken, OneShot
from genctl.errors import GenctlError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ------------------------------------------------------------------------------------------ models

class ItemBranch(nn.Module):
    """Runs eagerly; torch.export cannot trace it: a branch on a tensor's value via ``.item()``."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8 + 1, 4)

    def forward(self, z, smile):
        if smile.max().item() > 0.5:  # data-dependent: the exporter cannot guard on it
            z = z * 2
        return self.net(torch.cat([z, smile[:, None]], dim=1)).reshape(-1, 1, 2, 2)


class SmallEmbedding(nn.Module):
    """forward(z, label) with an embedding of ``classes`` rows."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.embed, self.net = nn.Embedding(classes, 4), nn.Linear(8 + 4, 4)

    def forward(self, z, label):
        return self.net(torch.cat([z, self.embed(label)], dim=1)).reshape(-1, 1, 2, 2)


class SmallDenoiser(nn.Module):
    """forward(x_t, t, digit): an embedding of ``classes`` rows, no row for a null class past them."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.embed, self.net = nn.Embedding(classes, 4), nn.Linear(4 + 4, 4)

    def forward(self, x, t, digit):
        h = torch.cat([x.reshape(-1, 4), self.embed(digit)], dim=1)
        return self.net(h).reshape(-1, 1, 2, 2)


class FewPositions(nn.Module):
    """forward(tokens, style): learned positions for 8 tokens only."""

    def __init__(self, vocab: int = 3 + 3, positions: int = 8):
        super().__init__()
        self.tok, self.pos, self.style = nn.Embedding(vocab, 8), nn.Embedding(positions, 8), nn.Embedding(2, 8)
        self.head = nn.Linear(8, vocab)

    def forward(self, tokens, style):
        pos = torch.arange(tokens.shape[1])
        return self.head(self.tok(tokens) + self.pos(pos)[None] + self.style(style)[:, None])


# ---------------------------------------------------------------------- item 2: export failures

def test_export_failure_names_its_cause_in_one_quiet_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(progress, "ENABLED", False)  # only what the exporter itself would print is left
    with pytest.raises(GenctlError) as info:
        genctl.export_model(ItemBranch(), tmp_path / "b", loop=OneShot(noise_shape=(8,)),
                            conditions=[genctl.Continuous("smile", 0.0, 1.0)])
    message = str(info.value)
    assert "\n" not in message and not ANSI.search(message) and "\x1b" not in message, message
    assert message.startswith("Export of graph 'sample' | got GuardOnDataDependentSymNode: Could not guard on data-dependent"), message
    assert "test_new_user.py:" in message and "in forward)" in message, message  # where in the user's code
    assert "TorchExportError" not in message and "verbose=True" in message, message
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)  # no graph dump, no exporter log
    assert not (tmp_path / "b").exists()


def test_export_verbose_lets_the_exporter_log_through(tmp_path, capfd, monkeypatch):
    from genctl import logs

    monkeypatch.setattr(progress, "ENABLED", False)
    with pytest.raises(GenctlError, match="GuardOnDataDependentSymNode"):
        genctl.export_model(ItemBranch(), tmp_path / "b", loop=OneShot(noise_shape=(8,)),
                            conditions=[genctl.Continuous("smile", 0.0, 1.0)], verbose=True)
    out, err = capfd.readouterr()
    assert "def forward" in out + err  # the exporter's graph dump, shown on request
    assert logs.VERBOSE is False  # restored after the call


# -------------------------------------------------------------- item 3: ranges probed before export

def test_categorical_with_more_names_than_the_embedding(tmp_path):
    names = tuple(f"c{i}" for i in range(12))
    with pytest.raises(GenctlError) as info:
        genctl.export_model(SmallEmbedding(10), tmp_path / "b", loop=OneShot(noise_shape=(8,)),
                            conditions=[genctl.Categorical("label", names=names)])
    message = str(info.value)
    assert message.startswith("Condition 'label' at its largest index 11 ('c11') | got IndexError: index out of range in self"), message
    assert "expected a model that takes every index 0..11" in message and "\n" not in message, message
    assert not (tmp_path / "b").exists()


def test_diffusion_null_past_the_embedding(tmp_path):
    with pytest.raises(GenctlError) as info:
        genctl.export_model(SmallDenoiser(3), tmp_path / "b", loop=Diffusion(sample_shape=(1, 2, 2), timesteps=10, null={"digit": 3}),
                            conditions=[genctl.Categorical("digit", names=("a", "b", "c"))])
    message = str(info.value)
    assert message.startswith("Diffusion null 'digit' = 3 | got IndexError: index out of range in self"), message
    assert "a null class needs a row of its own, e.g. nn.Embedding(4, ...)" in message, message


def test_next_token_context_longer_than_the_positions(tmp_path):
    with pytest.raises(GenctlError) as info:
        genctl.export_model(FewPositions(), tmp_path / "b", loop=NextToken(vocab="abc", context=12),
                            conditions=[genctl.Categorical("style", names=("plain", "fancy"))])
    message = str(info.value)
    assert message.startswith("NextToken context=12 (12 tokens) | got IndexError: index out of range in self"), message
    assert "sequences of up to 12 tokens" in message, message


def test_vector_low_above_high_is_refused_at_declaration():
    with pytest.raises(GenctlError) as info:
        genctl.Vector("tint", 3, 1.0, -1.0)
    message = str(info.value)
    assert "'tint'" in message and " | got " in message and " | expected " in message and "\n" not in message, message


# ---------------------------------------------------------------------- item 5: no silent choices

def _class_folder(root, classes=("cat", "dog"), size=(8, 8), per_class=4):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8), "L").save(root / name / f"{i}.png")
    return root


def test_non_image_files_are_counted_and_noted_by_train_only(tmp_path, capfd):
    from test_cli import invoke

    from genctl.data.user import dataset_notes, load_user_dataset

    root = _class_folder(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "raw.psd").write_bytes(b"\0" * 8)
    (root / "dog" / ".DS_Store").write_bytes(b"\0")  # hidden files are not counted
    ds = load_user_dataset(root)
    assert ds.skipped_files == ["cat/notes.txt", "dog/raw.psd"]
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the library itself stays quiet
    (note,) = dataset_notes(ds)
    assert note.startswith("skipped 2 non-image entries in ") and "'cat/notes.txt'" in note, note
    res = invoke("train", "cvae", "--dataset", root, "--epochs", 1, "--out", tmp_path / "ck")
    assert res.exit_code == 0, res.output
    assert "note: skipped 2 non-image entries" in res.output, res.output


def test_a_folder_with_one_class_is_refused_before_training(tmp_path):
    from test_cli import assert_one_line_error, invoke

    root = _class_folder(tmp_path / "one", classes=("cat",))
    res = invoke("train", "cvae", "--dataset", root, "--epochs", 1, "--out", tmp_path / "ck")
    assert_one_line_error(res, "got 1 class ('cat')", "expected at least two classes")
    assert not (tmp_path / "ck").exists()


def test_from_image_of_another_size_is_noted(tmp_path):
    import numpy as np
    from PIL import Image

    from genctl.render.samples import read_images

    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8), "RGB").save(tmp_path / "big.png")
    notes = []
    images = read_images(tmp_path / "big.png", [1, 8, 8], note=notes.append)
    assert images.shape == (1, 1, 8, 8)
    assert len(notes) == 1 and "resized 16x16 to 8x8" in notes[0] and "converted RGB to grayscale" in notes[0], notes
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(tmp_path / "fits.png")
    read_images(tmp_path / "fits.png", [1, 8, 8], note=notes.append)
    assert len(notes) == 1  # nothing to say


def test_wording_counts_and_articles(tmp_path):
    from genctl.training.train import check_train

    with pytest.raises(GenctlError, match=r"got 2 values \| expected 1 value$"):
        genctl.Vector("gain", 1).parse("0.1,0.2")
    with pytest.raises(GenctlError, match=r"got 1 value \| expected 3 values$"):
        genctl.Vector("tint", 3).parse("0.1")
    with pytest.raises(GenctlError, match=r"got an image dataset \| expected a text dataset"):
        check_train("charrnn", "digits", tmp_path / "ck")


# ---------------------------------------------------------------------- item 6: the server

@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("newuser") / "small"
    genctl.export_model(SmallEmbedding(10), out, loop=OneShot(noise_shape=(8,)),
                        conditions=[genctl.Categorical("label", names=tuple(str(i) for i in range(10)))])
    return out


def test_vanished_clients_are_one_log_line_and_a_counter(small_bundle, caplog, capfd):
    import logging
    import socket
    import time

    import httpx

    from genctl.serve import ServeConfig, create_app
    from genctl.serve.server import background

    caplog.set_level(logging.INFO, logger="genctl.serve.access")
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    with genctl.load(small_bundle, backend="onnxruntime") as gen:
        app = create_app(gen, ServeConfig(max_wait_ms=1))
        with background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            port = int(url.rsplit(":", 1)[1])
            for _ in range(50):  # headers and part of a body, then gone
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"conditions\": {\"lab")
            deadline, metrics = time.monotonic() + 20, ""
            while "genctl_client_disconnects_total 50.0" not in metrics and time.monotonic() < deadline:
                time.sleep(0.1)
                metrics = client.get("/metrics").text
            assert "genctl_client_disconnects_total 50.0" in metrics, metrics
            bad = {"seed": -5, "n": 0, "controls": {"temperature": "hot"}}
            errors = {k: client.post("/generate", json={k: v}).json()["error"] for k, v in bad.items()}
            unknown = client.post("/generate", json={"controls": {"steps": 3}}).json()["error"]
            assert client.post("/generate", json={"n": 1}).status_code == 200
    logged = caplog.text + "".join(capfd.readouterr())
    assert "Traceback" not in logged and "Exception in ASGI" not in logged and "ClientDisconnect" not in logged, logged
    assert sum("POST /generate 499" in r.getMessage() for r in caplog.records) == 50
    assert errors["seed"].startswith("Request field 'seed' | got -5 | "), errors
    assert errors["n"].startswith("Request 'n'") and "--" not in errors["n"], errors
    assert errors["controls"].startswith("Request field 'controls.temperature' | got 'hot'"), errors
    assert unknown.startswith("Request field 'controls.steps' | got a control this model's sampler does not use"), unknown


def test_ray_serve_stops_serve_and_ray_on_sigterm(monkeypatch):
    """Ray itself is not needed: start/stop are stand-ins; what is checked is that SIGTERM reaches stop()."""
    import os
    import signal
    import threading

    from genctl.serve import ray as ray_adapter

    calls = []
    monkeypatch.setattr(ray_adapter, "start", lambda bundle, **kw: calls.append("start"))
    monkeypatch.setattr(ray_adapter, "stop", lambda: calls.append("stop"))

    def unhandled(signum, frame):
        pytest.fail("SIGTERM was not handled by serve_ray")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        ray_adapter.serve_ray("bundle")
        timer.join()
        assert calls == ["start", "stop"]
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored after
    finally:
        signal.signal(signal.SIGTERM, previous)
