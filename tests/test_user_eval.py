"""Control accuracy for the user's own data, and text models with their own token ids.

- ``genctl eval`` and the build gate train an evaluator on the user's labelled data (image folder,
  label,text csv), scored on the split the generator never saw, cached by the data's content hash;
  ``genctl eval --dataset PATH`` does the same for an ``export_model`` bundle.
- ``NextToken(vocab=[...], bos=, eos=, pad=)``: the model's own ids reach the manifest and the
  sampler (BOS to start, EOS to stop, PAD after); a CSV header names the text condition.

The models live in this file, importable as ``test_user_eval:<Class>`` for the torch backend.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import genctl
from genctl.byo import NextToken, OneShot
from genctl.cli.main import app

SHAPES = ("bars", "crosses", "dots")  # folder names, sorted: the label order
OWN_VOCAB = ["<s>", "</s>", "<pad>", "a", "b", "c", "bc"]  # the model's own ids: bos 0, eos 1, pad 2


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def shapes_folder(root, per_class: int = 20, seed: int = 0, extra: int = 0):
    """8x8 grayscale PNGs in three clearly different classes: a vertical bar, a plus sign, scattered dots."""
    rng = np.random.default_rng(seed)
    for name in SHAPES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class + (extra if name == "dots" else 0)):
            img = np.zeros((8, 8), dtype=np.uint8)
            if name == "bars":
                img[:, rng.integers(1, 7)] = 255
            elif name == "crosses":
                r, c = rng.integers(2, 6, size=2)
                img[r, c - 2:c + 3] = 255
                img[r - 2:r + 3, c] = 255
            else:
                for _ in range(4):
                    img[rng.integers(0, 8), rng.integers(0, 8)] = 255
            Image.fromarray(img, "L").save(root / name / f"{i}.png")
    return root


def evaluators():
    import os
    from pathlib import Path

    return sorted(p.name for p in (Path(os.environ["GENCTL_CACHE"]) / "evaluators").glob("user-shapes-*"))


@pytest.fixture(scope="module")
def shapes_bundle(tmp_path_factory):
    from genctl.export import export_bundle
    from genctl.training.train import train

    root = tmp_path_factory.mktemp("user-eval")
    data = shapes_folder(root / "shapes")
    train("cvae", str(data), root / "ckpt", epochs=2, seed=0)
    export_bundle(root / "ckpt", root / "bundle")
    return root / "bundle", data


# ---------------------------------------------------------------------------- item 1: image data

def test_eval_of_a_bundle_trained_on_an_image_folder(shapes_bundle, tmp_path):
    bundle, data = shapes_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())["dataset"]
    assert manifest["name"] == "user:shapes" and manifest["path"] == str(data.resolve()) and len(manifest["content_hash"]) == 64
    res = invoke("eval", bundle, "-n", "30", "--backend", "onnxruntime", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0.0 <= report["control_accuracy"] <= 1.0 and set(report["per_class"]) == set(SHAPES)
    assert report["evaluator_test_accuracy"] >= 0.6  # real held-out images of clearly different classes
    assert "scored on its test split (6)" in report["evaluator_data"] and "train split (54)" in report["evaluator_data"]
    first = evaluators()
    assert len(first) == 1 and manifest["content_hash"][:16] in first[0]
    # cached: a second eval reuses it; edited data is a new evaluator (keyed by the content hash)
    assert invoke("eval", bundle, "-n", "9").exit_code == 0 and evaluators() == first
    edited = shapes_folder(tmp_path / "shapes", extra=3)
    res = invoke("eval", bundle, "-n", "9", "--dataset", edited)
    assert res.exit_code == 0, res.output
    assert len(evaluators()) == 2


def test_build_gate_checks_control_on_user_data(shapes_bundle):
    from genctl.bundle import Bundle
    from genctl.optimize.gate import GateConfig, control_check

    bundle, _ = shapes_bundle
    with genctl.load(bundle, backend="onnxruntime") as gen:
        report = control_check(Bundle.load(bundle), gen.backend, gen.backend, GateConfig(control_n_per_class=4))
    assert "skipped" not in report and report["passed"] and report["drop_points"] == 0.0


class Stamp(nn.Module):
    """A user's one-shot model for the shapes: forward(noise, shape) -> (B, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.kind = nn.Embedding(3, 8)
        self.net = nn.Sequential(nn.Linear(16, 64), nn.Tanh())

    def forward(self, noise, shape):
        return self.net(torch.cat([noise, self.kind(shape)], dim=1)).reshape(-1, 1, 8, 8)


def test_eval_dataset_option_for_an_export_model_bundle(shapes_bundle, tmp_path):
    _, data = shapes_bundle
    torch.manual_seed(0)
    genctl.export_model(Stamp(), tmp_path / "stamp", loop=OneShot(noise_shape=(8,)), conditions=[genctl.Categorical("shape", names=SHAPES)])
    res = invoke("eval", tmp_path / "stamp", "-n", "9")
    assert res.exit_code == 1 and "no evaluator that applies" in res.output and "--dataset PATH" in res.output
    assert res.output.count("\n") == 1
    res = invoke("eval", tmp_path / "stamp", "-n", "9", "--dataset", data, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0.0 <= report["control_accuracy"] <= 1.0 and report["evaluator_test_accuracy"] >= 0.6
    wrong = tmp_path / "two"
    for name in ("bars", "dots"):
        (wrong / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(wrong / name / "0.png")
    res = invoke("eval", tmp_path / "stamp", "-n", "9", "--dataset", wrong)
    assert res.exit_code == 1 and "first condition categorical(3)" in res.output and res.output.count("\n") == 1


# ----------------------------------------------------------------------- item 1 + 4: text data

@pytest.fixture(scope="module")
def words_bundle(tmp_path_factory):
    from genctl.export import export_bundle
    from genctl.training.train import train

    root = tmp_path_factory.mktemp("user-words")
    rng = np.random.default_rng(0)
    rows = ["language,word"]
    for label, letters in (("vowelish", "aeiou"), ("consonantal", "bcdfgk")):
        rows += [f"{label},{''.join(rng.choice(list(letters), size=rng.integers(3, 7)))}" for _ in range(30)]
    (root / "words.csv").write_text("\n".join(rows) + "\n")
    train("charrnn", str(root / "words.csv"), root / "ckpt", epochs=1, seed=0,
          hparams={"embed_dim": 8, "hidden": 16, "layers": 1, "batch_size": 16})
    export_bundle(root / "ckpt", root / "bundle")
    return root / "bundle"


def test_csv_header_names_the_condition(words_bundle):
    gen = genctl.load(words_bundle, backend="onnxruntime")
    cond = gen.bundle.conditions.conditions[0]
    assert cond.name == "language" and cond.names == ("consonantal", "vowelish")
    assert gen.bundle.graphs["step"].input_names == ["token", "hidden", "language"]
    samples = gen.generate({"language": "vowelish"}, n=3, seed=0)
    assert samples.rows == ["language=vowelish"] and len(samples.texts) == 3


def test_csv_without_header_names_the_condition_label(tmp_path):
    from genctl.data.user import load_user_dataset

    (tmp_path / "w.csv").write_text("en,hello\nen,world\nde,hallo\n")
    ds = load_user_dataset(tmp_path / "w.csv")
    from genctl.families import get_family

    assert ds.condition_name == "label" and ds.label_names == ("de", "en") and len(ds.train_names) == 3
    family = get_family("charrnn")
    assert family.conditions(family.make_config(ds.info())).conditions[0].name == "label"


def test_eval_of_a_bundle_trained_on_a_text_csv(words_bundle, tmp_path):
    res = invoke("eval", words_bundle, "-n", "20", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["control_accuracy"]) == {"consonantal", "vowelish"} and 0.0 <= report["mean_accuracy"] <= 1.0
    assert report["classifier_test_accuracy"] >= 0.6 and "test split (6)" in report["evaluator_data"]


# ----------------------------------------------------------------------- item 4: own token ids

class ScriptedLM(nn.Module):
    """A next-token model over its own vocabulary (``OWN_VOCAB``): style 0 writes "abc", style 1 "ba",
    then its own EOS (id 1); a small learned term keeps the logits token-dependent for parity."""

    def __init__(self, ctx: int = 8):
        super().__init__()
        script = torch.zeros(2, ctx, len(OWN_VOCAB))
        for style, ids in enumerate(([3, 4, 5, 1], [4, 3, 1])):
            for t in range(ctx):
                script[style, t, ids[min(t, len(ids) - 1)]] = 10.0
        self.register_buffer("script", script)
        self.tok = nn.Embedding(len(OWN_VOCAB), len(OWN_VOCAB))
        nn.init.normal_(self.tok.weight, std=0.1)

    def forward(self, tokens, style):
        T = tokens.shape[1]
        return self.script[style][:, :T] + self.tok(tokens)  # (B, T, V)


def test_next_token_model_with_its_own_ids(tmp_path):
    from genctl.vocab import check_text

    torch.manual_seed(0)
    out = tmp_path / "own"
    genctl.export_model(ScriptedLM(), out, loop=NextToken(vocab=OWN_VOCAB, bos=0, eos=1, pad=2, context=8),
                        conditions=[genctl.Categorical("style", names=("abc", "ba"))])
    ref = genctl.load(out, backend="torch")
    info, manifest = ref.bundle.info, ref.bundle.manifest
    assert info["vocab"] == OWN_VOCAB and info["special_tokens"] == {"pad": 2, "bos": 0, "eos": 1}
    assert manifest["parity"]["loop"]["passed"] and all(g["passed"] for g in manifest["parity"]["graphs"].values())
    got = genctl.load(out, backend="onnxruntime")
    a = ref.generate(None, n=2, seed=0, temperature=0.0)
    b = got.generate(None, n=2, seed=0, temperature=0.0)
    assert np.array_equal(a.data, b.data) and a.texts == b.texts == ["abc", "abc", "ba", "ba"]
    assert a.data.tolist() == [[3, 4, 5, 1]] * 2 + [[4, 3, 1, 2]] * 2  # stops at its EOS (1), PAD (2) after
    sampled = got.generate({"style": "ba"}, n=4, seed=3)  # sampling: the learned term never outweighs the script
    assert sampled.texts == ["ba"] * 4
    assert check_text("abc", OWN_VOCAB, specials=info["special_tokens"]) == [3, 6]  # longest token first
    assert check_text("abc", list("<>?abc")) == [3, 4, 5]  # genctl's ids: the first three are specials


def test_own_vocab_declarations_are_checked():
    from genctl.errors import GenctlError

    with pytest.raises(GenctlError, match=r"NextToken eos \| got 9 \| expected a token id in 0..6"):
        NextToken(vocab=OWN_VOCAB, bos=0, eos=9, context=8).check()
    with pytest.raises(GenctlError, match=r"NextToken vocab \| got 'abc' \| expected a list of distinct token strings"):
        NextToken(vocab="abc", bos=0, eos=1, context=8).check()
    tokens, specials = NextToken(vocab=OWN_VOCAB, bos=0, eos=1, context=8).tokens()  # no pad: EOS pads
    assert tokens == OWN_VOCAB and specials == {"pad": 1, "bos": 0, "eos": 1}
    assert NextToken(vocab="ab", context=4).tokens() == (["<pad>", "<bos>", "<eos>", "a", "b"], {"pad": 0, "bos": 1, "eos": 2})
