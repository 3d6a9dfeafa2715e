"""ntm: the copy / repeat-copy data, the paper's addressing, the step graph with the memory as loop state,
export parity (graph, loop, 100-step state drift), bit I/O, bad input, eval + heads plot, names, a user's
memory-augmented model through export_model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import genctl
from genctl.byo import Recurrent
from genctl.cli.main import app
from genctl.data import get_dataset
from genctl.data.bits import BOS, DELIM, FIRST_VECTOR, input_table
from genctl.errors import ConditionError
from genctl.families import get_family
from genctl.families.ntm import NTMStep, address, circular_shift
from genctl.runtime.generator import Generator
from genctl.vocab import EOS

TINY = {"memory_rows": 12, "memory_width": 6, "controller": 24, "compile": False, "iters_per_epoch": 40}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def repeat(make_bundle):
    """A tiny NTM trained 40 iterations on repeat copy, exported (graph, loop and drift parity checked)."""
    return make_bundle("ntm", "repeat-copy", epochs=1, **TINY)


@pytest.fixture(scope="module")
def gens(repeat):
    with Generator.load(repeat.path, backend="torch") as t, Generator.load(repeat.path, backend="onnxruntime") as o:
        yield t, o


def tiny_model(dataset: str = "repeat-copy", **hp):
    family = get_family("ntm")
    config = family.make_config(get_dataset(dataset).info(), {**TINY, **hp})
    torch.manual_seed(0)
    return family, family.build_model(config).eval(), config


# ------------------------------------------------------------------ data and model, no export

def test_repeat_copy_batch_layout():
    ds = get_dataset("repeat-copy")
    tokens, cond, targets = ds.batch(np.random.default_rng(0), 4, length=3, repeats=2)
    assert tokens.shape == (4, 2 + 3 + 6) and targets.shape == (4, 7, 9) and (cond == 1).all()
    assert (tokens[:, 0] == BOS).all() and (tokens[:, 4] == DELIM).all()
    assert (tokens[:, 5:8] == tokens[:, 1:4]).all() and (tokens[:, 8:] == tokens[:, 1:4]).all()  # written twice
    bits = input_table(len(ds.vocab))[tokens[:, 1:4]][..., :8]
    assert (targets[:, :3, :8] == bits).all() and (targets[:, 3:6, :8] == bits).all()
    assert (targets[:, :-1, 8] == 0).all() and (targets[:, -1] == [0] * 8 + [1]).all()  # end marker only last
    assert ds.vocab[FIRST_VECTOR + 0b10110010] == "10110010"
    assert get_dataset("copy").label_names == ("1",) and ds.label_names == ("1", "2", "3", "4", "5")


def test_the_loss_scores_the_outputs_from_the_delimiter_step_on():
    from genctl.families.ntm_train import output_phase

    tokens, _, targets = get_dataset("repeat-copy").batch(np.random.default_rng(0), 2, length=3, repeats=2)
    phase = output_phase(torch.from_numpy(tokens), torch.from_numpy(targets))
    assert (tokens[:, phase.start] == DELIM).all() and phase.stop == tokens.shape[1] and phase.stop - phase.start == 3 * 2 + 1


def test_addressing_follows_the_paper():
    w = torch.tensor([[0.1, 0.2, 0.7, 0.0]])
    assert torch.equal(circular_shift(w, 1), torch.tensor([[0.0, 0.1, 0.2, 0.7]]))  # out[i] = w[i - 1]
    memory = torch.eye(4)[None] + 1e-6  # (1, 4, 4): row i is e_i
    key = torch.tensor([[0.0, 0.0, 5.0, 0.0]])
    big, on, off = torch.tensor([[20.0]]), torch.tensor([[20.0]]), torch.tensor([[-20.0]])
    no_shift, one_right = torch.tensor([[-20.0, 20.0, -20.0]]), torch.tensor([[-20.0, -20.0, 20.0]])
    gamma = torch.tensor([[5.0]])
    content = address(torch.cat([key, big, on, no_shift, gamma], 1), memory, w, 1)
    assert content.argmax() == 2 and content[0, 2] > 0.99 and torch.allclose(content.sum(), torch.tensor(1.0))
    shifted = address(torch.cat([key, big, off, one_right, gamma], 1), memory, w, 1)  # previous weighting, moved by +1
    assert shifted.argmax() == 3 and shifted[0, 3] > 0.99


@pytest.mark.parametrize("feed_outputs", [True, False])
@torch.inference_mode()
def test_step_graph_equals_teacher_forced_training_forward(feed_outputs):
    """The step graph from the sampler's zero state = training's teacher-forced forward. With ``feed_outputs``
    (the recipe, the default for bit data) the fed-back outputs are the input after the delimiter; without,
    they are ignored (the paper's zero inputs)."""
    _, model, config = tiny_model(feed_outputs=feed_outputs)
    assert config["hparams"]["feed_outputs"] is feed_outputs and tiny_model()[2]["hparams"]["feed_outputs"] is True
    tokens, cond, _ = get_dataset("repeat-copy").batch(np.random.default_rng(1), 3, length=4, repeats=2)
    tokens, cond = torch.from_numpy(tokens), torch.from_numpy(cond)
    ref = model(tokens, cond)  # (B, T, 9) from the learned initial state
    step = NTMStep(model)
    other = tokens.clone()
    other[:, 7:] = FIRST_VECTOR  # different fed-back outputs after the first output step
    for feed in (tokens, other):
        state = [torch.zeros(s.shape) for s in model.initial_state(3)]  # the sampler's zero state
        same = []
        for t in range(tokens.shape[1]):
            logits, *state = step(feed[:, t], *state, cond)
            same.append(torch.allclose(logits, model.token_logits(ref[:, t]), atol=1e-5))
        assert all(same) if feed is tokens or not feed_outputs else (all(same[:7]) and not any(same[7:]))


@torch.inference_mode()
def test_token_logits_are_the_factorised_bernoulli_distribution():
    _, model, _ = tiny_model()
    y = torch.randn(5, 9) * 3
    logits = model.token_logits(y)
    allowed = [EOS] + list(range(FIRST_VECTOR, logits.shape[1]))
    assert torch.allclose(torch.logsumexp(logits[:, allowed], dim=1), torch.zeros(5), atol=1e-5)  # a distribution
    best = logits[:, FIRST_VECTOR:].argmax(dim=1)
    bits = (y[:, :8] > 0).long()
    assert (best == (bits * 2 ** torch.arange(7, -1, -1)).sum(dim=1)).all()  # greedy = per-bit thresholding


def test_lstm_baseline_is_the_same_family_without_memory():
    family, model, config = tiny_model(memory_rows=0, controller=40)
    spec = family.graphs(model, config)["step"].spec
    assert [t.name for t in spec.inputs] == ["token", "h", "c", "phase", "repeats"]
    assert family.info(config)["bits"]["max_input"] == 64


# ------------------------------------------------------------------ export, parity, generation

def test_export_parity_and_memory_drift_after_100_steps(repeat):
    manifest = repeat.bundle.manifest
    step = manifest["graphs"]["step"]
    assert [t["name"] for t in step["inputs"]] == ["token", "h", "c", "memory", "w_read", "w_write", "read", "phase", "repeats"]
    assert next(t for t in step["inputs"] if t["name"] == "memory")["shape"] == ["batch", 12, 6]
    assert manifest["parity"]["graphs"]["step"]["passed"] and manifest["parity"]["loop"]["texts_identical"]
    drift = manifest["parity"]["loop"]["state_drift"]
    assert drift["steps"] == 100 and drift["greedy_tokens_identical"]
    assert drift["state_max_abs_diff"]["memory"] < 1e-5 and drift["state_max_abs_diff"]["w_write"] < 1e-5
    curve = repeat.config["train"]
    assert curve["iterations"] == 40 and curve["step"] == "eager" and manifest["sampler"]["defaults"]["temperature"] == 0.0


def test_bits_in_bits_out_identical_on_torch_and_ort(gens):
    t, o = gens
    for kwargs in ({"prefix": "10110010 01100101 11110000"}, {}, {"temperature": 1.0}):
        ref = t.generate({"repeats": ["1", "5"]}, n=3, seed=4, **kwargs)
        got = o.generate({"repeats": ["1", "5"]}, n=3, seed=4, **kwargs)
        assert ref.texts == got.texts and np.array_equal(ref.data, got.data)
    text = got.texts[0]
    inp, out = text.split(" | ")
    assert len(inp.split()) == 10 and all(len(v) == 8 and set(v) <= {"0", "1"} for v in (inp + " " + out).split())
    assert got.texts[0] != got.texts[1]  # a random input per sequence without a prefix


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"conditions": {"repeats": "6"}}, r"Condition 'repeats' \| got 6 \| expected one of \[1, 2, 3, 4, 5\]"),
    ({"conditions": {"repeats": "0"}}, r"Condition 'repeats' \| got 0 \| expected one of \[1, 2, 3, 4, 5\]"),
    ({"prefix": "1011001 01100101"}, r"--prefix \| got '1011001' \(vector 1\) of 7 bits \| expected 8-bit vectors"),
    ({"prefix": "10110010 0110a101"}, r"--prefix \| got '0110a101' \(vector 2\) with characters other than 0 and 1"),
    ({"prefix": " ".join(["10110010"] * 13)}, r"--prefix \| got 13 vectors \| expected at most 12 \(the model's memory holds 12"),
])
def test_bad_bit_input_is_one_line_error(gens, kwargs, message):
    with pytest.raises(ConditionError, match=message) as err:
        gens[1].generate(kwargs.pop("conditions", None), n=1, seed=0, **kwargs)
    assert "\n" not in str(err.value)


def test_cli_generate_draws_bits_and_refuses_bad_input_writing_nothing(repeat, tmp_path):
    result = invoke("generate", repeat.path, "--cond", "repeats=2", "-n", "1", "--prefix", "10110010 01100101",
                    "--out", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    assert "repeats=2  10110010 01100101 | " in result.output and "█·" in result.output
    record = json.loads((tmp_path / "out.json").read_text())
    assert record is not None
    for bad in (["--cond", "repeats=9"], ["--prefix", "2"], ["--prefix", "101"]):
        out = tmp_path / "bad.txt"
        result = invoke("generate", repeat.path, *bad, "--out", out)
        assert result.exit_code == 1 and result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
        assert not out.exists()


def test_eval_reports_bit_error_by_length_and_draws_the_heads(repeat, tmp_path):
    result = invoke("eval", repeat.path, "-n", "20", "--backend", "onnxruntime", "--json", tmp_path / "e.json",
                    "--plot", tmp_path / "heads.png")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert set(report) >= {"lengths 1-10", "lengths 11-12", "example"}  # long lengths capped at the 12 memory rows
    assert 0 <= report["lengths 1-10"]["bit_error_%"] <= 100 and "repeats 5" in report["lengths 1-10"]
    assert (tmp_path / "heads.png").stat().st_size > 5000


def test_head_trace_reads_the_weightings_from_the_step_graph(gens):
    from genctl.eval.bits import head_trace

    trace = head_trace(gens[1], "10110010 01100101 11110000", 1)  # repeats=2
    assert trace["input"].shape == (8, 3) and trace["w_write"].shape[0] == 12 and trace["w_read"].shape == trace["w_write"].shape
    assert np.allclose(trace["w_write"].sum(axis=0), 1.0, atol=1e-4)  # a weighting per step
    assert trace["prompt_steps"] == 5 and trace["steps"] <= 5 + 6


def test_build_int8_and_tensorrt_rtx_take_the_step_graph(repeat, copy_bundle):
    path = copy_bundle(repeat.path)
    result = invoke("build", path, "--target", "onnxruntime", "--precision", "int8")
    assert result.exit_code == 0 and "gate passed" in result.output and "loop 100% identical" in result.output, result.output
    with Generator.load(path, backend="onnxruntime", precision="int8") as gen:
        assert len(gen.generate({"repeats": "2"}, n=2, seed=0).texts) == 2
    pytest.importorskip("tensorrt_rtx_bindings", reason="genctl[tensorrt-rtx] (Linux x86_64 / Windows wheels only)")
    result = invoke("build", path, "--target", "tensorrt-rtx", "--precision", "fp32", "--compute-capability", "8.9")
    assert result.exit_code == 0 and "built for compute capability 8.9" in result.output, result.output


# ------------------------------------------------------------------ names, baseline, bring your own

@pytest.mark.slow
def test_names_ntm_exports_and_writes_names(make_bundle):
    trained = make_bundle("ntm", "names", epochs=1, memory_rows=8, memory_width=6, controller=32, embed_dim=16,
                          train_subset=256, compile=False)
    bundle = trained.bundle
    assert bundle.manifest["parity"]["loop"]["texts_identical"]
    assert bundle.graphs["step"].input_names == ["token", "h", "c", "memory", "w_read", "w_write", "read", "locale"]  # no phase
    with Generator.load(trained.path, backend="onnxruntime") as gen:
        samples = gen.generate({"locale": "de_DE"}, n=3, seed=0, prefix="Ma")
    assert all(t.startswith("Ma") for t in samples.texts)


def test_untrained_lstm_baseline_exports_with_parity(make_bundle):
    trained = make_bundle("ntm", "copy", epochs=0, memory_rows=0, controller=20)
    loop = trained.bundle.manifest["parity"]["loop"]
    assert loop["passed"] and loop["state_drift"]["greedy_tokens_identical"]
    assert set(loop["state_drift"]["state_max_abs_diff"]) == {"h", "c", "phase"}


class UserNTM(nn.Module):
    """A user's memory-augmented model: ``logits, (h, memory) = forward(token, (h, memory), style)``."""

    def __init__(self, vocab: int = 3 + 4, hidden: int = 16, rows: int = 6, width: int = 4):
        super().__init__()
        self.tok, self.style = nn.Embedding(vocab, hidden), nn.Embedding(2, hidden)
        self.cell, self.key, self.value = nn.GRUCell(hidden + width, hidden), nn.Linear(hidden, width), nn.Linear(hidden, width)
        self.head, self.rows = nn.Linear(hidden + width, vocab), rows

    def forward(self, token, state, style):
        h, memory = state  # (B, H), (B, rows, width)
        read = torch.softmax(memory @ self.key(h).unsqueeze(2), dim=1).transpose(1, 2) @ memory  # (B, 1, width)
        h = self.cell(torch.cat([self.tok(token) + self.style(style), read[:, 0]], dim=1), h)
        w = torch.softmax(memory @ self.key(h).unsqueeze(2), dim=1)  # (B, rows, 1) write where it read
        memory = memory * (1 - w) + w * torch.tanh(self.value(h)).unsqueeze(1)
        return self.head(torch.cat([h, read[:, 0]], dim=1)) * 3.0, (h, memory)


def test_export_model_takes_a_users_memory_augmented_model_with_tuple_state(tmp_path):
    torch.manual_seed(3)
    out = tmp_path / "user-ntm"
    genctl.export_model(UserNTM(), out, loop=Recurrent(vocab="abcd", context=10, state={"h": ("batch", 16), "memory": ("batch", 6, 4)}),
                        conditions=[genctl.Categorical("style", names=("plain", "fancy"))])
    bundle = genctl.load(out, backend="torch").bundle
    assert bundle.graphs["step"].input("memory").shape == ["batch", 6, 4]
    assert bundle.manifest["parity"]["loop"]["state_drift"]["greedy_tokens_identical"]
    ref = genctl.load(out, backend="torch").generate({"style": ["plain", "fancy"]}, n=4, seed=2)
    got = genctl.load(out, backend="onnxruntime").generate({"style": ["plain", "fancy"]}, n=4, seed=2)
    assert ref.texts == got.texts


@pytest.mark.slow
def test_short_copy_training_lowers_the_bit_error(tmp_path):
    from genctl.training.train import train

    config = train("ntm", "copy", tmp_path / "ckpt", epochs=1, hparams={**TINY, "iters_per_epoch": 400, "curve_every": 100,
                                                                      "memory_rows": 16, "controller": 48, "max_seconds": 300})
    curve = config["learning_curve"]["points"]
    assert [p[0] for p in curve] == [100, 200, 300, 400] and curve[-1][2] < curve[0][2] - 0.05  # bit error falls
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["learning_curve"]["points"] == curve
