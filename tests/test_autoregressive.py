"""charrnn / chartransformer: graphs, export parity, seeded sampling on torch and ORT, bad input."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from genctl.errors import ConditionError
from genctl.families import get_family
from genctl.runtime.generator import Generator
from genctl.runtime.samplers.autoregressive import nucleus, pick

TINY = {"charrnn": {"embed_dim": 16, "hidden": 32, "layers": 2, "train_subset": 1500},
        "chartransformer": {"d_model": 32, "heads": 2, "layers": 2, "train_subset": 1500}}
FAMILIES = list(TINY)
FORBIDDEN_OPS = {"If", "Loop", "Scan", "ScatterND", "ScatterElements", "SequenceConstruct"}


@pytest.fixture(scope="module", params=FAMILIES)
def bundle(request, make_bundle):
    """A 1-epoch tiny model of each family, exported (graph + loop parity checked); shared with test_graph_pick."""
    return make_bundle(request.param, "names", epochs=1, **TINY[request.param]).bundle


@pytest.fixture(scope="module")
def gens(bundle):
    with Generator.load(bundle, backend="torch") as t, Generator.load(bundle, backend="onnxruntime") as o:
        yield t, o


def tiny_model(name: str):
    from genctl.data import get_dataset

    family = get_family(name)
    config = family.make_config(get_dataset("names").info(), TINY[name])
    torch.manual_seed(0)
    return family, family.build_model(config).eval(), config


# ------------------------------------------------------------------ graphs without export

@torch.inference_mode()
def test_rnn_step_graph_equals_trained_gru():
    family, model, config = tiny_model("charrnn")
    tokens, locale = torch.tensor([[1, 10, 11, 12], [1, 20, 21, 22]]), torch.tensor([0, 6])
    full = model(tokens, locale)  # (B, T, V) through nn.GRU
    step = family.graphs(model, config)["step"].module
    hidden = torch.zeros(2, 2, 32)
    for t in range(tokens.shape[1]):
        logits, hidden = step(tokens[:, t], hidden, locale)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_transformer_prefill_then_decode_equals_full_forward():
    family, model, config = tiny_model("chartransformer")
    tokens, locale = torch.tensor([[1, 10, 11, 12, 13], [1, 20, 21, 22, 23]]), torch.tensor([2, 7])
    full = model(tokens, locale)
    graphs = family.graphs(model, config)
    logits, k, v = graphs["prefill"].module(tokens[:, :2], locale)
    torch.testing.assert_close(logits, full[:, 1], atol=1e-5, rtol=1e-5)
    for t in range(2, tokens.shape[1]):
        logits, k, v = graphs["decode"].module(tokens[:, t], k, v, locale)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
    assert k.shape == (2, 2, 2, 5, 16)  # (layers, batch, heads, seq, head_dim)


# ------------------------------------------------------------------ bundle

def test_manifest_records_text_facts_and_parity(bundle):
    m = bundle.manifest
    info, sampler = m["info"], m["sampler"]
    assert info["vocab"][:3] == ["<pad>", "<bos>", "<eos>"] and info["special_tokens"] == {"pad": 0, "bos": 1, "eos": 2}
    assert info["context"] == info["max_len"] - 1 and info["output"]["kind"] == "text"
    assert sampler["kind"] == "autoregressive" and sampler["feeds_back"]
    for out, inp in sampler["feeds_back"].items():
        assert any(out in g.output_names for g in bundle.graphs.values())
        assert any(inp in g.input_names for g in bundle.graphs.values())
    assert m["conditions"][0]["name"] == "locale" and len(m["conditions"][0]["names"]) == 8
    assert all(g["passed"] for g in m["parity"]["graphs"].values())
    assert m["parity"]["loop"]["passed"] and m["parity"]["loop"]["texts_identical"]


def test_graphs_use_only_plain_ops(bundle):
    for name in bundle.graphs:
        model = onnx.load(str(bundle.graph_file(name)))
        ops = {n.op_type for n in model.graph.node}
        assert not ops & FORBIDDEN_OPS, f"{name}: {ops & FORBIDDEN_OPS}"
        dims = {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
        assert "batch" in dims  # dynamic batch (and seq / past for the transformer)
    if "decode" in bundle.graphs:
        dims = {d.dim_param for i in onnx.load(str(bundle.graph_file("decode"))).graph.input
                for d in i.type.tensor_type.shape.dim}
        assert "past" in dims


# ------------------------------------------------------------------ torch == onnxruntime

def test_greedy_tokens_identical_on_torch_and_ort(gens):
    t, o = gens
    a = t.generate({"locale": ["de_DE", "ru_RU", "el_GR"]}, n=2, seed=0, temperature=0)
    b = o.generate({"locale": ["de_DE", "ru_RU", "el_GR"]}, n=2, seed=0, temperature=0)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.texts == b.texts and a.kind == "text"
    assert a.texts[0] == a.texts[1] and a.texts[2] == a.texts[3]  # greedy ignores the seed within a row


@pytest.mark.parametrize("controls", [{"temperature": 1.0}, {"temperature": 0.8, "top_k": 5}, {"top_p": 0.9},
                                      {"temperature": 1.2, "top_k": 10, "top_p": 0.8}])
def test_sampled_text_identical_on_torch_and_ort(gens, controls):
    t, o = gens
    a = t.generate(None, n=4, seed=123, **controls)
    b = o.generate(None, n=4, seed=123, **controls)
    assert a.texts == b.texts and len(a.texts) == 32
    np.testing.assert_array_equal(a.data, b.data)
    other = o.generate(None, n=4, seed=124, **controls)
    assert other.texts != b.texts  # the seed matters, so the equality above is not vacuous


def test_io_binding_loop_gives_the_same_text_with_the_state_kept_as_tensors(bundle, gens):
    """The device-resident loop (IO binding; on a GPU it runs on CUDA) on the CPU provider: the
    state fed back is a tensor ONNX Runtime allocated, finished rows are dropped from it, and the
    text is identical to plain session.run."""
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    _, o = gens
    on_gpu = o.backend.sessions[next(iter(o.backend.sessions))].get_providers()[0] != "CPUExecutionProvider"
    assert (o.backend.values is not None) == on_gpu  # IO binding is the default on GPU providers only
    with Generator(o.bundle, OnnxRuntimeBackend(o.bundle, io_binding=True)) as g:
        assert g.backend.describe().endswith("+iobinding")
        for kwargs in ({"seed": 3}, {"seed": 0, "temperature": 0}, {"seed": 5, "prefix": "Ma", "top_p": 0.9}):
            a, b = o.generate(None, n=3, **kwargs), g.generate(None, n=3, **kwargs)
            assert a.texts == b.texts
            np.testing.assert_array_equal(a.data, b.data)
        lengths = {len(t) for t in a.texts}
        assert len(lengths) > 1  # rows stopped at different steps, so take_rows compacted the state
        graph = o.bundle.sampler["graphs"].get("step") or o.bundle.sampler["graphs"]["prefill"]
        spec = o.bundle.graphs[graph]
        feeds = {t.name: np.zeros(t.concrete({"batch": 2, "seq": 3}), dtype=t.dtype) for t in spec.inputs}
        out = g.backend.run_values(graph, feeds)
        assert all(isinstance(v, torch.Tensor) for v in out.values())
        ref = o.backend.run(graph, feeds)
        for name, value in out.items():
            np.testing.assert_array_equal(value.numpy(), ref[name])


@pytest.mark.gpu
def test_gpu_onnxruntime_keeps_the_state_on_the_device_with_identical_tokens(cuda, gens):
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    t, _ = gens
    backend = OnnxRuntimeBackend(t.bundle)
    assert backend.values is not None and backend.values.device == "cuda", backend.describe()
    with Generator(t.bundle, backend) as g:
        for kwargs in ({"seed": 0, "temperature": 0}, {"seed": 3, "top_k": 5}):
            assert g.generate(None, n=3, **kwargs).texts == t.generate(None, n=3, **kwargs).texts


@pytest.mark.gpu
def test_tensorrt_decoding_gives_the_same_tokens(tensorrt, bundle, gens, copy_bundle):
    """fp32 engines, state on the GPU (CUDA graphs where the shapes repeat: the RNN step)."""
    from genctl.optimize.build import GateConfig, build

    path = copy_bundle(bundle.path, "text")
    record = build(path, target="tensorrt", precision="fp32", batch="1:8:32", gate=GateConfig(control_n_per_class=0))
    assert record["status"] == "passed", record["gate"]["failures"]
    t, _ = gens
    with Generator.load(path, backend="tensorrt", precision="fp32") as g:
        for kwargs in ({"seed": 0, "temperature": 0}, {"seed": 3}, {"seed": 5, "prefix": "Ma", "top_p": 0.9}):
            assert g.generate(None, n=3, **kwargs).texts == t.generate(None, n=3, **kwargs).texts
        assert not g.backend.capture.failed
        if "step" in g.bundle.graphs:  # the RNN step repeats its shapes until rows finish
            assert g.backend.capture.captures > 0 and g.backend.capture.replays > 0


def test_prefix_and_mixed_locale_batch(gens):
    t, o = gens
    a = t.generate({"locale": "pl_PL,fr_FR,ru_RU"}, n=3, seed=5, prefix="Ma")
    b = o.generate({"locale": "pl_PL,fr_FR,ru_RU"}, n=3, seed=5, prefix="Ma")
    assert a.rows == ["locale=pl_PL", "locale=fr_FR", "locale=ru_RU"] and len(a.texts) == 9
    assert all(x.startswith("Ma") for x in a.texts) and a.texts == b.texts
    assert a.meta["prefix"] == "Ma" and (a.data[:, :2] == a.data[0, :2]).all()


def test_per_sequence_stopping_and_meta(gens):
    _, o = gens
    s = o.generate(None, n=6, seed=3)
    eos = o.bundle.info["special_tokens"]["eos"]
    lengths = []
    for row in s.data:
        ended = np.flatnonzero(row == eos)
        n_tokens = ended[0] + 1 if len(ended) else int((row != 0).sum())
        assert (row[n_tokens:] == 0).all()  # PAD after each sequence's own end
        lengths.append(n_tokens)
    assert s.meta["tokens"] == sum(lengths) and len(set(lengths)) > 1  # rows stopped at different steps
    assert s.meta["ttft_s"] > 0 and len(s.meta["inter_token_s"]) == max(lengths) - 1
    short = o.generate(None, n=6, seed=3, max_new_tokens=2)
    assert short.data.shape[1] <= 2 and all(len(x) <= 2 for x in short.texts)
    assert [x[:1] for x in short.texts] == [x[:1] for x in s.texts]  # same seed, same first draw


def test_max_new_tokens_fills_the_context_exactly(gens):
    _, o = gens
    context = o.bundle.info["context"]
    s = o.generate({"locale": 0}, n=2, seed=0, max_new_tokens=context - 3, prefix="Abc")
    assert s.data.shape[1] <= context  # prefix + new tokens
    with pytest.raises(ConditionError, match=rf"--max-new-tokens \| got {context - 2} \| expected <= {context - 3}"):
        o.generate({"locale": 0}, n=1, max_new_tokens=context - 2, prefix="Abc")


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs, message", [
    ({"conditions": {"locale": "xx_XX"}}, r"Condition 'locale' \| got 'xx_XX' \| expected one of \[en_US"),
    ({"prefix": "Ma€"}, r"--prefix \| got 'Ma€' with characters outside the vocabulary \['€'\]"),
    ({"max_new_tokens": 500}, r"--max-new-tokens \| got 500 \| expected <= \d+: the model's context"),
    ({"prefix": "A" * 40}, r"--prefix \| got 40 characters \| expected at most"),
    ({"top_p": 0.0}, r"Control --top-p \| got 0.0 \| expected a value in \(0.0, 1.0\]"),
    ({"top_p": 1.5}, r"Control --top-p \| got 1.5 \| expected a value in \(0.0, 1.0\]"),
    ({"temperature": -0.5}, r"Control --temperature \| got -0.5 \| expected a value in \[0.0, inf\]"),
    ({"top_k": -1}, r"Control --top-k \| got -1 \| expected a value in \[0, inf\]"),
    ({"steps": 10}, r"Control 'steps' \| got a control this model's sampler does not use"),
])
def test_bad_input_is_one_line_error(gens, kwargs, message):
    _, o = gens
    kwargs = dict(kwargs)
    conditions = kwargs.pop("conditions", None)
    with pytest.raises(ConditionError, match=message) as info:
        o.generate(conditions, n=1, **kwargs)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ host-side sampling

def test_pick_greedy_top_k_top_p():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 30)).astype(np.float32)
    u = rng.random(64)
    best = logits[:, 3:].argmax(1) + 3  # PAD, BOS, EOS banned below
    greedy = {"temperature": 0.0, "top_k": 0, "top_p": 1.0}
    np.testing.assert_array_equal(pick(logits, u, greedy, [0, 1, 2]), best)
    np.testing.assert_array_equal(pick(logits, u, {**greedy, "temperature": 1.0, "top_k": 1}, [0, 1, 2]), best)
    np.testing.assert_array_equal(pick(logits, u, {**greedy, "temperature": 1.0, "top_p": 1e-6}, [0, 1, 2]), best)
    top3 = np.argsort(-logits[:, 3:], axis=1)[:, :3] + 3
    got = pick(logits, u, {**greedy, "temperature": 1.0, "top_k": 3}, [0, 1, 2])
    assert all(g in row for g, row in zip(got, top3))


def test_pick_is_inverse_cdf_of_the_softmax():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    logits = np.log(p)[None].repeat(10_000, 0)
    u = np.random.default_rng(1).random(10_000)
    got = pick(logits, u, {"temperature": 1.0, "top_k": 0, "top_p": 1.0}, [])
    np.testing.assert_allclose(np.bincount(got, minlength=4) / 10_000, p, atol=0.015)
    np.testing.assert_array_equal(pick(logits[:3], np.array([0.05, 0.25, 0.95]), {"temperature": 1.0, "top_k": 0, "top_p": 1.0}, []),
                                  [0, 1, 3])


def test_nucleus_keeps_smallest_set_reaching_top_p():
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    np.testing.assert_allclose(nucleus(p, 0.7), [[0.5, 0.3, 0.0, 0.0]])
    np.testing.assert_allclose(nucleus(p, 0.5), [[0.5, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(nucleus(p, 0.81), [[0.5, 0.3, 0.15, 0.0]])


# ------------------------------------------------------------------ eval

def test_evaluate_text_reports_control_accuracy_novelty_diversity(gens):
    from genctl.eval.text import evaluate_text

    _, o = gens
    report = evaluate_text(o, n_per_locale=5, seed=0)
    assert set(report["control_accuracy"]) == set(o.bundle.conditions.conditions[0].names)
    assert 0.7 < report["classifier_test_accuracy"] <= 1.0  # the ceiling, measured on real held-out names
    for key in ("mean_accuracy", "novelty", "diversity"):
        assert 0.0 <= report[key] <= 1.0
    assert sum(len(v) for v in report["examples"].values()) == 40


def test_build_gate_checks_locale_control_accuracy(bundle, copy_bundle):
    from genctl.eval.text import evaluate_text
    from genctl.optimize.build import GateConfig, build
    from genctl.optimize.gate import control_samples

    assert control_samples(bundle, GateConfig()) == 100  # names per locale by default (images: 20 per class)
    path = copy_bundle(bundle.path, "names")
    record = build(path, precision="int8", gate=GateConfig(control_n_per_class=20), force=True)
    control = record["gate"]["control"]
    with Generator.load(path, backend="onnxruntime") as fp32:  # the same evaluation, done by hand
        expected = evaluate_text(fp32, n_per_locale=20, seed=0)["mean_accuracy"] * 100
    assert control["n_per_class"] == 20 and control["fp32_points"] == pytest.approx(expected)
    assert control["passed"] == (control["drop_points"] <= 2.0) and record["status"] == ("passed" if record["gate"]["passed"] else "failed")


def test_cli_generate_prints_and_writes_names(bundle, tmp_path):
    import json

    from typer.testing import CliRunner

    from genctl.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", str(bundle.path), "--cond", "locale=de_DE", "-n", "4", "--temperature", "0",
                              "--backend", "onnxruntime", "--out", str(tmp_path / "n.txt")])
    assert res.exit_code == 0, res.output
    names = (tmp_path / "n.txt").read_text().splitlines()
    assert len(names) == 4 and all(name in res.output for name in names)
    res = runner.invoke(app, ["generate", str(bundle.path), "--cond", "locale=it_IT", "-n", "2", "--out", str(tmp_path / "n.json")])
    records = json.loads((tmp_path / "n.json").read_text())
    assert res.exit_code == 0 and records[0]["condition"] == "locale=it_IT" and records[0]["tokens"]
    res = runner.invoke(app, ["generate", str(bundle.path), "--cond", "locale=xx_XX"])
    assert res.exit_code == 1 and "xx_XX" in res.output and "Traceback" not in res.output


def test_requests_batched_together_give_what_each_gives_alone(gens):
    """Locales, n, seeds, temperature / top-k / top-p and token budgets differ per request; rows
    leave the batch at EOS or their own budget and every request's text equals a lone run."""
    _, o = gens
    asks = [({"locale": "pl_PL"}, 3, 1, {}), ({"locale": "fr_FR,de_DE"}, 2, 2, {"temperature": 0.7, "top_k": 5}),
            ({"locale": "ru_RU"}, 4, 3, {"max_new_tokens": 3, "top_p": 0.9}), (None, 1, 4, {"temperature": 0.0}),
            ({"locale": "pl_PL"}, 2, 1, {"prefix": "Ma"})]  # another prompt: its own loop
    batched = o.generate_many([o.request(c, n, seed, **k) for c, n, seed, k in asks])
    for (c, n, seed, k), got in zip(asks, batched):
        alone = o.generate(c, n=n, seed=seed, **k)
        assert got.texts == alone.texts and got.rows == alone.rows
        assert got.meta["tokens"] == alone.meta["tokens"]
        np.testing.assert_array_equal(got.data, alone.data)
    assert all(len(t) <= 3 for t in batched[2].texts) and max(len(t) for t in batched[0].texts) > 3
