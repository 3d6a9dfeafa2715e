"""chartransformer ``fixed_cache``: a context-sized KV cache decode (``decode_fixed``, sampler mode
``kv_fixed``) gives the same tokens as the growing cache and as torch, alone or batched."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from genctl.runtime.generator import Generator

TINY = {"d_model": 32, "heads": 2, "layers": 2, "train_subset": 1500, "fixed_cache": True}


@pytest.fixture(scope="module")
def bundle(make_bundle):
    return make_bundle("chartransformer", "names", epochs=1, **TINY).bundle


@pytest.fixture(scope="module")
def gens(bundle):
    with Generator.load(bundle, backend="torch") as t, Generator.load(bundle, backend="onnxruntime") as o:
        yield t, o


def growing(g: Generator) -> Generator:
    """The same loaded model sampled with the growing cache (``kv_cache`` on ``decode``)."""
    g.sampler.section = {**g.sampler.section, "mode": "kv_cache"}
    return g


@torch.inference_mode()
def test_decode_fixed_equals_growing_decode():
    from genctl.data import get_dataset
    from genctl.families import get_family
    from genctl.families.text import context_length

    family = get_family("chartransformer")
    config = family.make_config(get_dataset("names").info(), TINY)
    torch.manual_seed(0)
    model = family.build_model(config).eval()
    graphs, ctx = family.graphs(model, config), context_length(config)
    tokens, locale = torch.tensor([[1, 10, 11, 12, 13, 14], [1, 20, 21, 22, 23, 24]]), torch.tensor([2, 7])
    full = model(tokens, locale)
    logits, k, v = graphs["prefill"].module(tokens[:, :2], locale)
    fk, fv = (torch.nn.functional.pad(c, (0, 0, 0, ctx - c.shape[3])) for c in (k, v))
    for t in range(2, tokens.shape[1]):
        a, k, v = graphs["decode"].module(tokens[:, t], k, v, locale)
        b, fk, fv = graphs["decode_fixed"].module(tokens[:, t], fk, fv, torch.tensor([t, t]), locale)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b, full[:, t], atol=1e-5, rtol=1e-5)
        assert fk.shape == (2, 2, 2, ctx, 16)  # the same shape every step
    torch.testing.assert_close(fk[:, :, :, :tokens.shape[1]], k)
    assert not fk[:, :, :, tokens.shape[1]:].any()  # slots not written yet stay zero


def test_manifest_and_static_cache_shapes(bundle):
    s = bundle.manifest["sampler"]
    assert s["mode"] == "kv_fixed" and s["graphs"]["decode_fixed"] == "decode_fixed" and s["position_input"] == "position"
    assert all(g["passed"] for g in bundle.manifest["parity"]["graphs"].values())
    assert bundle.manifest["parity"]["loop"]["texts_identical"]
    graph = onnx.load(str(bundle.graph_file("decode_fixed"))).graph
    ctx = bundle.info["context"]
    for io in (*graph.input, *graph.output):
        dims = [d.dim_param or d.dim_value for d in io.type.tensor_type.shape.dim]
        if io.name in ("past_k", "past_v", "present_k", "present_v"):
            assert dims[1] == "batch" and dims[3] == ctx and all(isinstance(d, int) for d in dims[2:])
    ops = {n.op_type for n in graph.node}
    assert not ops & {"If", "Loop", "Scan", "ScatterND", "ScatterElements"}


@pytest.mark.parametrize("kwargs", [{"seed": 0, "temperature": 0}, {"seed": 0, "temperature": 0, "prefix": "Ma"},
                                    {"seed": 3, "top_k": 5}, {"seed": 5, "top_p": 0.9, "prefix": "Ko"}])
def test_tokens_identical_to_growing_cache_and_torch(bundle, gens, kwargs):
    t, o = gens
    fixed_ort, fixed_torch = o.generate(None, n=3, **kwargs), t.generate(None, n=3, **kwargs)
    with Generator.load(bundle, backend="onnxruntime") as g:
        grow = growing(g).generate(None, n=3, **kwargs)
    assert fixed_ort.texts == grow.texts == fixed_torch.texts
    np.testing.assert_array_equal(fixed_ort.data, grow.data)
    np.testing.assert_array_equal(fixed_ort.data, fixed_torch.data)
    if "temperature" not in kwargs:
        assert len({len(x) for x in fixed_ort.texts}) > 1  # rows finished at different steps: rows were dropped


def test_max_new_tokens_fills_the_context(gens):
    t, o = gens
    ctx = o.bundle.info["context"]
    a = o.generate({"locale": 0}, n=2, seed=0, temperature=0, max_new_tokens=ctx - 3, prefix="Abc")
    b = t.generate({"locale": 0}, n=2, seed=0, temperature=0, max_new_tokens=ctx - 3, prefix="Abc")
    assert a.texts == b.texts


def test_batched_requests_equal_alone(gens):
    _, o = gens
    asks = [({"locale": "pl_PL"}, 3, 1, {"temperature": 0}), ({"locale": "fr_FR,de_DE"}, 2, 2, {"top_k": 5}),
            ({"locale": "ru_RU"}, 4, 3, {"max_new_tokens": 3, "top_p": 0.9}), (None, 1, 4, {"temperature": 0.0})]
    batched = o.generate_many([o.request(c, n, seed, **k) for c, n, seed, k in asks])
    for (c, n, seed, k), got in zip(asks, batched):
        alone = o.generate(c, n=n, seed=seed, **k)
        assert got.texts == alone.texts
        np.testing.assert_array_equal(got.data, alone.data)


@pytest.mark.parametrize("backend", ["onnxruntime+graphpick", "onnxruntime+graphpick+iobinding"])
def test_fused_pick_and_io_binding_give_the_same_tokens(bundle, gens, backend):
    """The pick appended to ``decode_fixed`` (the position fed too); the cache kept as backend values."""
    _, o = gens
    with Generator.load(bundle, backend=backend) as g:
        for kwargs in ({"seed": 0, "temperature": 0}, {"seed": 3, "top_k": 5}):
            assert g.generate(None, n=3, **kwargs).texts == o.generate(None, n=3, **kwargs).texts
