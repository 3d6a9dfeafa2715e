"""Bring your own model: user modules with their own signatures, exported and run by every front.

The models live in this file (importable as ``test_byo:<Class>``, which is what the torch reference
backend rebuilds them from) and their signatures differ from genctl's families on purpose: other
argument names, several conditions of every kind, float time, v-prediction, tuple LSTM state.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import genctl
from genctl.byo import Diffusion, NextToken, OneShot, Recurrent
from genctl.cli.main import app
from genctl.errors import GenctlError
from genctl.families import schedule

VOCAB = "abcdef"  # token ids: 0 pad, 1 bos, 2 eos, 3.. the characters
SHAPES = genctl.Categorical("shape_kind", names=("circle", "square", "star"))
SMILE = genctl.Continuous("smile", 0.0, 1.0)
EMB = genctl.Vector("emb", 4, -1.0, 1.0)


# ------------------------------------------------------------------------------------------ models

class Painter(nn.Module):
    """One-shot: forward(z, shape_kind, smile, emb) -> (B, 2, 6, 6) image."""

    def __init__(self, zdim: int = 8, width: int = 32):
        super().__init__()
        self.kind = nn.Embedding(3, 8)
        self.net = nn.Sequential(nn.Linear(zdim + 8 + 1 + 4, width), nn.ReLU(), nn.Linear(width, 2 * 6 * 6), nn.Tanh())

    def forward(self, z, shape_kind, smile, emb):
        h = torch.cat([z, self.kind(shape_kind), smile[:, None], emb], dim=1)
        return self.net(h).reshape(-1, 2, 6, 6)


class OracleDenoiser(nn.Module):
    """forward(noisy, time, klass, brightness): the exact eps or v for a data set of one image per class.

    The clean image of class k is ``targets[k] * brightness``; with guidance 1 and DDIM (eta 0) the
    sampler must land on it exactly, which checks genctl's time conversion and v -> eps algebra.
    """

    def __init__(self, prediction: str = "epsilon", float_time: bool = False, timesteps: int = 40):
        super().__init__()
        ab = schedule.alphas_cumprod(schedule.betas_for("linear", timesteps))
        self.register_buffer("ab", torch.tensor(ab, dtype=torch.float32))
        targets = torch.linspace(-0.8, 0.8, 3 * 36).reshape(3, 1, 6, 6)
        self.register_buffer("targets", torch.cat([targets, torch.zeros(1, 1, 6, 6)]))  # row 3 = null class
        self.v, self.float_time, self.timesteps = prediction == "v", float_time, timesteps

    def forward(self, noisy, time, klass, brightness):
        index = torch.round(time * self.timesteps).long() if self.float_time else time
        ab = self.ab[index].reshape(-1, 1, 1, 1)
        x0 = self.targets[klass] * brightness.reshape(-1, 1, 1, 1)
        eps = (noisy - ab.sqrt() * x0) / (1 - ab).sqrt()
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0 if self.v else eps


class TinyLM(nn.Module):
    """Next token without a cache: forward(ids, style, warmth) -> (B, T, V)."""

    def __init__(self, vocab: int = 3 + len(VOCAB), ctx: int = 12, width: int = 16):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Parameter(torch.randn(ctx, width) * 0.5)
        self.style, self.warm = nn.Embedding(2, width), nn.Linear(1, width)
        self.block = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids, style, warmth):
        T = ids.shape[1]
        h = self.tok(ids) + self.pos[:T] + (self.style(style) + self.warm(warmth[:, None]))[:, None]
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        return self.head(self.block(h, src_mask=mask))


class TinyLSTM(nn.Module):
    """Recurrent with a tuple state: forward(prev, hc, style, mood) -> (logits, (h, c))."""

    def __init__(self, vocab: int = 3 + len(VOCAB), hidden: int = 16):
        super().__init__()
        self.tok, self.style, self.mood = nn.Embedding(vocab, hidden), nn.Embedding(2, hidden), nn.Linear(3, hidden)
        self.cell, self.head = nn.LSTMCell(hidden, hidden), nn.Linear(hidden, vocab)

    def forward(self, prev, hc, style, mood):
        h, c = self.cell(self.tok(prev) + self.style(style) + self.mood(mood), hc)
        return self.head(h) * 3.0, (h, c)


# ---------------------------------------------------------------------------------------- bundles

@pytest.fixture(scope="module")
def painter_bundle(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("byo") / "painter"
    genctl.export_model(Painter(), out, loop=OneShot(noise_shape=(8,)), conditions=[SHAPES, SMILE, EMB])
    return out


@pytest.fixture(scope="module")
def lm_bundle(tmp_path_factory):
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("byo") / "lm"
    genctl.export_model(TinyLM(), out, loop=NextToken(vocab=VOCAB, context=12),
                        conditions=[genctl.Categorical("style", names=("plain", "fancy")), genctl.Continuous("warmth", -1.0, 1.0)])
    return out


@pytest.fixture(scope="module")
def lstm_bundle(tmp_path_factory):
    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("byo") / "lstm"
    genctl.export_model(TinyLSTM(), out, loop=Recurrent(vocab=VOCAB, context=12, state={"h": ("batch", 16), "c": ("batch", 16)}),
                        conditions=[genctl.Categorical("style", names=("plain", "fancy")), genctl.Vector("mood", 3)])
    return out


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------ one-shot

def test_oneshot_same_samples_on_every_backend(painter_bundle):
    bundle = genctl.load(painter_bundle, backend="torch").bundle
    assert bundle.family == "custom" and bundle.graphs["sample"].input_names == ["z", "shape_kind", "smile", "emb"]
    assert bundle.manifest["parity"]["loop"]["passed"]
    request = {"shape_kind": ["star", 0], "smile": 0.25, "emb": [0.5, -0.5, 0.0, 1.0]}
    ref = genctl.load(painter_bundle, backend="torch").generate(request, n=3, seed=5)
    got = genctl.load(painter_bundle, backend="onnxruntime").generate(request, n=3, seed=5)
    assert ref.rows == ["shape_kind=star smile=0.25 emb=[0.5, -0.5, 0, 1]", "shape_kind=circle smile=0.25 emb=[0.5, -0.5, 0, 1]"]
    assert got.data.shape == (6, 2, 6, 6) and np.abs(got.data - ref.data).max() < 1e-5
    # the condition reaches the module: rows differ only in shape_kind (and their noise), and the
    # same noise with another shape_kind gives another image
    same_noise = genctl.load(painter_bundle, backend="onnxruntime").generate({**request, "shape_kind": "circle"}, n=3, seed=5)
    assert np.abs(same_noise.data[:3] - got.data[:3]).max() > 1e-3


def test_oneshot_cli_conditions_and_errors(painter_bundle, tmp_path):
    np.save(tmp_path / "emb.npy", np.array([[0.1, 0.2, 0.3, 0.4], [-1, -1, 1, 1]], dtype=np.float32))
    res = invoke("generate", painter_bundle, "--cond", "smile=0.7", "--cond", "shape_kind=square", "--cond-file",
                 tmp_path / "emb.npy", "-n", 2, "--out", tmp_path / "s.npy")
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "s.npy").shape == (4, 2, 6, 6)  # two rows from the (2, 4) file
    res = invoke("generate", painter_bundle, "--cond", "smile=1.5")
    assert res.exit_code == 1 and res.output.strip() == "error: Condition 'smile' | got 1.5 | expected a number in [0.0, 1.0]"
    res = invoke("generate", painter_bundle, "--cond-file", "mood=x.npy")
    assert res.exit_code == 1 and "NAME one of the vector conditions ['emb']" in res.output


def test_oneshot_bench_build_serve_and_eval(painter_bundle):
    res = invoke("bench", painter_bundle, "--backends", "torch,onnxruntime", "--batch-sizes", "1,4")
    assert res.exit_code == 0, res.output
    res = invoke("build", painter_bundle, "--target", "onnxruntime", "--precision", "fp32")
    assert res.exit_code == 0 and "gate passed" in res.output and "control skipped" in res.output, res.output
    from genctl.serve.app import handle_generate

    with genctl.load(painter_bundle, backend="onnxruntime") as gen:
        reply = handle_generate(gen, {"conditions": {"shape_kind": 2, "smile": [0, 1], "emb": [0, 0, 0, 0]}, "n": 1})
    assert reply["shape"] == [2, 2, 6, 6]
    res = invoke("eval", painter_bundle)
    assert res.exit_code == 1 and "no evaluator that applies" in res.output and res.output.count("\n") == 1


class DigitPainter(nn.Module):
    """forward(z, label, smile) -> (B, 1, 8, 8): a digits-shaped model, so the digits evaluator applies."""

    def __init__(self):
        super().__init__()
        self.embed, self.out = nn.Embedding(10, 8), nn.Linear(4 + 8 + 1, 64)

    def forward(self, z, label, smile):
        return torch.tanh(self.out(torch.cat([z, self.embed(label), smile[:, None]], dim=1))).reshape(-1, 1, 8, 8)


def test_evaluate_on_a_shipped_dataset_enables_eval(tmp_path):
    digits = genctl.Categorical("label", names=tuple("0123456789"))
    with pytest.raises(GenctlError, match=r"evaluate_on='digits' \| got first condition continuous"):
        genctl.export_model(DigitPainter(), tmp_path / "x", loop=OneShot(noise_shape=(4,)), conditions=[SMILE, digits],
                            evaluate_on="digits")
    genctl.export_model(DigitPainter(), tmp_path / "b", loop=OneShot(noise_shape=(4,)), conditions=[digits, SMILE],
                        evaluate_on="digits")
    res = invoke("eval", tmp_path / "b", "-n", 20, "--backend", "onnxruntime")
    assert res.exit_code == 0 and "control" in res.output.lower(), res.output


# ----------------------------------------------------------------------------------------- diffusion

@pytest.mark.parametrize("prediction, float_time", [("v", True), ("epsilon", False)])
def test_diffusion_oracle_lands_on_the_target(tmp_path, prediction, float_time):
    T = 40
    loop = Diffusion(sample_shape=(1, 6, 6), timesteps=T, prediction=prediction, t_dtype="float32" if float_time else "int64",
                     t_scale=1.0 / T if float_time else 1.0, null={"klass": 3, "brightness": 0.0}, steps=8, guidance_scale=1.0)
    genctl.export_model(OracleDenoiser(prediction, float_time, T), tmp_path / "b", loop=loop,
                        kwargs={"prediction": prediction, "float_time": float_time, "timesteps": T},
                        conditions=[genctl.Categorical("klass", names=("a", "b", "c")), genctl.Continuous("brightness", 0.0, 1.0)])
    oracle = OracleDenoiser()
    for backend in ("torch", "onnxruntime"):
        with genctl.load(tmp_path / "b", backend=backend) as gen:
            out = gen.generate({"klass": ["a", "c"], "brightness": 0.5}, n=2, seed=3)
        want = np.repeat((oracle.targets[[0, 2]] * 0.5).numpy(), 2, axis=0)
        assert np.abs(out.data - want).max() < 1e-3, backend
    res = invoke("generate", tmp_path / "b", "--cond", "klass=b", "--guidance-scale", "3", "--steps", "4", "-n", 1)
    assert res.exit_code == 0, res.output


def test_diffusion_without_null_refuses_guidance(tmp_path):
    genctl.export_model(OracleDenoiser(), tmp_path / "b", loop=Diffusion(sample_shape=(1, 6, 6), timesteps=40, steps=4),
                        kwargs={"timesteps": 40}, conditions=[genctl.Categorical("klass", names=("a", "b", "c")),
                                                              genctl.Continuous("brightness", 0.0, 1.0)])
    with genctl.load(tmp_path / "b", backend="onnxruntime") as gen:
        assert gen.bundle.sampler["defaults"]["guidance_scale"] == 1.0
        with pytest.raises(GenctlError, match="guidance-scale"):
            gen.generate({"klass": 0}, n=1, guidance_scale=3.0)


def test_diffusion_guides_only_the_conditions_with_a_null(tmp_path):
    conds = [genctl.Categorical("klass", names=("a", "b", "c")), genctl.Continuous("brightness", 0.0, 1.0)]
    for null, message in (({"colour": 0}, r"Diffusion null 'colour' \| got no such condition"),
                          ({"klass": 1.5}, r"Diffusion null 'klass' \| got 1.5 \| expected a class index >= 0")):
        with pytest.raises(GenctlError, match=message):
            genctl.export_model(OracleDenoiser(), tmp_path / "x", loop=Diffusion(sample_shape=(1, 6, 6), timesteps=40, null=null),
                                kwargs={"timesteps": 40}, conditions=conds)
    # brightness has no null: both halves of the CFG batch see it, so at any guidance the oracle's
    # unconditional target is the null class scaled by the same brightness (zeros), and w scales the class image
    genctl.export_model(OracleDenoiser(), tmp_path / "b", loop=Diffusion(sample_shape=(1, 6, 6), timesteps=40, null={"klass": 3}),
                        kwargs={"timesteps": 40}, conditions=conds)
    with genctl.load(tmp_path / "b", backend="onnxruntime") as gen:
        out = gen.generate({"klass": "b", "brightness": 0.5}, n=1, steps=1, guidance_scale=0.5).data
    assert np.abs(out - OracleDenoiser().targets[1].numpy() * 0.25).max() < 1e-3


# ------------------------------------------------------------------------------------------- text

def _greedy_torch(step, n_rows: int, context: int) -> list[str]:
    """Greedy decoding written directly against torch: the reference the sampler must match exactly."""
    seqs, done = [[1] for _ in range(n_rows)], [False] * n_rows
    for i in range(context):  # BOS + all new tokens but the last fit the context
        logits = step(seqs).double()
        logits[:, [0, 1] + ([] if i else [2])] = -np.inf
        for r, tok in enumerate(logits.argmax(dim=1).tolist()):
            if not done[r]:
                seqs[r].append(tok)
                done[r] = tok == 2
        if all(done):
            break
    return ["".join(VOCAB[t - 3] for t in s[1:] if t > 2) for s in seqs]


@torch.inference_mode()
def test_next_token_recompute_matches_torch_exactly(lm_bundle):
    with genctl.load(lm_bundle, backend="onnxruntime") as gen:
        got = gen.generate({"style": ["plain", "fancy"], "warmth": 0.3}, n=1, temperature=0.0)
        assert gen.bundle.sampler["mode"] == "recompute"
    module = genctl.load(lm_bundle, backend="torch").backend.modules["next"].user
    style, warmth = torch.tensor([0, 1]), torch.tensor([0.3, 0.3])
    # finished rows keep being fed here (and dropped in the sampler): their logits do not affect live rows
    want = _greedy_torch(lambda seqs: module(_pad(seqs), style, warmth)[:, -1], 2, 12)
    assert got.texts == want
    sampled = [genctl.load(lm_bundle, backend=b).generate({"style": 1, "warmth": -1.0}, n=4, seed=7, top_k=3).texts
               for b in ("torch", "onnxruntime", "onnxruntime+graphpick")]  # the last picks inside the 'next' graph
    assert sampled[0] == sampled[1] == sampled[2]
    with genctl.load(lm_bundle, backend="onnxruntime+graphpick") as gen:
        assert gen.generate({"style": ["plain", "fancy"], "warmth": 0.3}, n=1, temperature=0.0).texts == want
        assert "next+pick:greedy" in gen.backend.sessions


def _pad(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [2] * (width - len(s)) for s in seqs])


@torch.inference_mode()
def test_recurrent_tuple_state_matches_torch_exactly(lstm_bundle):
    spec = genctl.load(lstm_bundle, backend="onnxruntime").bundle.graphs["step"]
    assert spec.input_names == ["token", "h", "c", "style", "mood"] and spec.feeds_back == {"h_out": "h", "c_out": "c"}
    mood = [0.2, -0.4, 1.0]
    with genctl.load(lstm_bundle, backend="onnxruntime") as gen:
        got = gen.generate({"style": [0, 1], "mood": mood}, n=1, temperature=0.0)
    module = genctl.load(lstm_bundle, backend="torch").backend.modules["step"].user
    state = {"hc": (torch.zeros(2, 16), torch.zeros(2, 16)), "fed": 0}
    style, moods = torch.tensor([0, 1]), torch.tensor([mood, mood])

    def step(seqs):  # one new token per call, the state carried in torch
        logits, state["hc"] = module(torch.tensor([s[-1] for s in seqs]), state["hc"], style, moods)
        return logits

    assert got.texts == _greedy_torch(step, 2, 12)
    with genctl.load(lstm_bundle, backend="onnxruntime+graphpick") as gen:  # tuple state through the fused step
        assert gen.generate({"style": [0, 1], "mood": mood}, n=1, temperature=0.0).texts == got.texts
    res = invoke("generate", lstm_bundle, "--cond", "style=fancy", "--cond", "mood=0,0,1", "-n", 3, "--seed", 1)
    assert res.exit_code == 0 and res.output.count("style=fancy") == 3, res.output


# --------------------------------------------------------------------------------- signature errors

class NoSmile(nn.Module):
    def forward(self, z, shape_kind):
        return z


class ExtraArg(nn.Module):
    def forward(self, z, shape_kind, smile, emb, scale):
        return z


class FlatEps(nn.Module):
    def forward(self, noisy, t, smile, emb):
        return noisy.flatten(1)  # (B, 36) instead of x_t's (B, 1, 6, 6)


class BadState(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3 + len(VOCAB))

    def forward(self, token, state, style):
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h), h  # always a single tensor, whatever was declared


class PairState(BadState):
    def forward(self, token, state, style):
        return self.head(state), (state, state)  # a tuple where a single tensor was declared


class NeedsWidth(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = nn.Linear(width, 2)

    def forward(self, z, shape_kind, smile, emb):
        return self.lin(z)


@pytest.mark.parametrize("module, loop, conds, message", [
    (NoSmile(), OneShot(noise_shape=(4,)), [SHAPES, SMILE],
     r"Argument 3 of NoSmile.forward \| got no parameter for condition 'smile' \| expected forward\(noise, shape_kind, smile\)"),
    (ExtraArg(), OneShot(noise_shape=(4,)), [SHAPES, SMILE, EMB],
     r"Argument 'scale' of ExtraArg.forward \| got a required parameter genctl has no value for"),
    (Painter(), OneShot(noise_shape=(5,)), [SHAPES, SMILE, EMB],
     r"Trial call Painter.forward\(z: float32 \(2, 5\), shape_kind: int64 \(2,\), smile: float32 \(2,\), emb: float32 \(2, 4\)\) \| got RuntimeError"),
    (FlatEps(), Diffusion(sample_shape=(1, 6, 6)), [SMILE, EMB],
     r"Output of FlatEps.forward \| got float32 \(2, 36\) \| expected epsilon shaped like x_t \(2, 1, 6, 6\)"),
    (BadState(), Recurrent(vocab=VOCAB, context=5, state={"h": ("batch", 4), "c": ("batch", 4)}), [genctl.Categorical("style", names=("p", "f"))],
     r"State returned by BadState.forward \| got float32 \(2, 4\) \| expected a tuple of 2 tensors as declared \(\['h', 'c'\]\)"),
    (NeedsWidth(4), OneShot(noise_shape=(4,)), [SHAPES, SMILE, EMB],
     r"Model factory 'test_byo:NeedsWidth' with kwargs \{\} \| got TypeError"),
    (Painter(), OneShot(noise_shape=(8,)), [genctl.Continuous("smile", 0, 1), SMILE],
     r"export_model conditions \| got names \['smile', 'smile'\] \| expected distinct identifier names"),
])
def test_unexportable_signatures_are_one_line_errors(tmp_path, module, loop, conds, message):
    with pytest.raises(GenctlError, match=message) as info:
        genctl.export_model(module, tmp_path / "b", loop=loop, conditions=conds)
    assert "\n" not in str(info.value) and not (tmp_path / "b").exists()


def test_local_class_is_refused_with_the_fix(tmp_path):
    class Local(Painter):
        pass

    with pytest.raises(GenctlError, match=r"Model class 'test_local_class.*not importable.*factory='module:attr'"):
        genctl.export_model(Local(), tmp_path / "b", loop=OneShot(noise_shape=(8,)), conditions=[SHAPES, SMILE, EMB])


def test_recurrent_state_structure_mismatch(tmp_path):
    loop = Recurrent(vocab=VOCAB, context=5, state=("batch", 4))  # declared a single tensor
    with pytest.raises(GenctlError, match=r"State returned by PairState.forward \| got tuple\[float32 \(2, 4\), float32 \(2, 4\)\] \| expected one tensor"):
        genctl.export_model(PairState(), tmp_path / "b", loop=loop, conditions=[genctl.Categorical("style", names=("p", "f"))])
    bad = Recurrent(vocab=VOCAB, context=5, state={"h": (4,)})
    with pytest.raises(GenctlError, match=r"Recurrent state 'h' \| got \[4\] \| expected a shape of positive ints with exactly one \"batch\""):
        genctl.export_model(BadState(), tmp_path / "b", loop=bad, conditions=[])
