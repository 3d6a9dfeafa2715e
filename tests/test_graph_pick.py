"""The token pick inside the step graph (``onnxruntime+graphpick``): the same tokens as the host pick.

The pick nodes run in real ONNX Runtime sessions, first on logits fed straight in (many control
combinations, ties, banned tokens), then appended to exported charrnn / chartransformer step
graphs, where whole generations must equal the host pick's and torch's token for token.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from genctl.runtime.backends import open_backend
from genctl.runtime.generator import Generator
from genctl.runtime.samplers.autoregressive import pick
from genctl.runtime.samplers.graph_pick import MODES, TOKEN, fusable, fuse, fused_spec, mode_for
from genctl.spec import GraphSpec, TensorSpec

V = 61
SPEC = GraphSpec("step", [TensorSpec("x", "float32", ["batch", V])], [TensorSpec("logits", "float32", ["batch", V], "output")])
TINY = {"charrnn": {"embed_dim": 16, "hidden": 32, "layers": 2, "train_subset": 1500},
        "chartransformer": {"d_model": 32, "heads": 2, "layers": 2, "train_subset": 1500}}


def identity_model(opset: int = 18) -> onnx.ModelProto:
    """A 'step graph' whose logits are its input, so the pick nodes can be fed any logits."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "step",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", V])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", V])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


@pytest.fixture(scope="module")
def pick_sessions():
    import onnxruntime as ort

    sessions = {}
    for mode in MODES:
        model = fuse(identity_model(), SPEC, "logits", mode)
        onnx.checker.check_model(model, full_check=True)
        sessions[mode] = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sessions


def feeds_for(z, u, controls, banned):
    b = len(z)
    mask = np.zeros(V, dtype=bool)
    mask[banned] = True
    return {"x": z, "pick_u": u, "pick_temperature": np.full(b, float(controls["temperature"])),
            "pick_top_k": np.full(b, controls["top_k"], dtype=np.int64), "pick_top_p": np.full(b, float(controls["top_p"])),
            "pick_banned": mask}


def test_pick_nodes_give_the_host_pick_token_for_token(pick_sessions):
    """600 random batches: temperatures incl. greedy, top-k incl. 1, V and > V, top-p incl. tiny,
    rounded logits (ties at the k-th value and in the nucleus order), EOS banned or not. Each batch
    goes through the mode ``mode_for`` picks and through ``full``, which must agree with it."""
    rng = np.random.default_rng(1)
    rows, modes = 0, set()
    for trial in range(600):
        b = int(rng.integers(1, 40))
        z = (rng.standard_normal((b, V)) * rng.choice([0.3, 1, 3, 10])).astype(np.float32)
        if trial % 5 == 0:
            z = np.round(z)  # ties
        controls = {"temperature": rng.choice([0.0, 0.5, 1.0, 1.7]), "top_k": int(rng.choice([0, 0, 1, 5, V - 1, V, 100])),
                    "top_p": rng.choice([1.0, 1.0, 0.9, 0.3, 1e-9])}
        banned = [0, 1] if trial % 2 else [0, 1, 2]
        u = rng.random(b)
        want = pick(z, u, controls, banned)
        feeds = feeds_for(z, u, controls, banned)
        mode = mode_for(feeds["pick_temperature"], feeds["pick_top_k"], feeds["pick_top_p"], V)
        modes.add(mode)
        for m in {mode, "full"}:
            np.testing.assert_array_equal(pick_sessions[m].run([TOKEN], feeds)[0], want, err_msg=f"{m} {controls}")
        rows += b
    assert modes == set(MODES) and rows > 10_000


def test_mode_for_takes_the_cheapest_exact_mode():
    t, k, p = np.array([0.0, 0.0]), np.array([0, 0]), np.array([1.0, 1.0])
    assert mode_for(t, k, p, V) == "greedy"
    assert mode_for(np.array([0.0, 0.7]), k, p, V) == "sample"  # a greedy row inside a sampled batch
    assert mode_for(t, np.array([0, V]), p, V) == "greedy"  # top-k >= V keeps every token
    assert mode_for(np.array([1.0, 1.0]), np.array([0, 3]), p, V) == "full"
    assert mode_for(np.array([1.0, 1.0]), k, np.array([1.0, 0.95]), V) == "full"


def test_fused_spec_and_refusals():
    spec = fused_spec(SPEC, "logits", "sample")
    assert spec.name == "step+pick:sample" and spec.output_names == [TOKEN]
    assert [t.name for t in spec.inputs] == ["x", "pick_u", "pick_temperature", "pick_top_k", "pick_top_p", "pick_banned"]
    assert spec.input("pick_banned").shape == [V] and spec.input("pick_u").shape == ["batch"]
    assert fusable(identity_model(), SPEC, "logits") is None
    assert "opset 12" in fusable(identity_model(12), SPEC, "logits")
    assert "not a float32" in fusable(identity_model(), SPEC, "x")  # not an output of the graph
    dynamic = GraphSpec("step", SPEC.inputs, [TensorSpec("logits", "float32", ["batch", "vocab"], "output")])
    assert "no fixed vocabulary size" in fusable(identity_model(), dynamic, "logits")


def test_pick_nodes_do_no_shape_arithmetic():
    """The CUDA EP runs shape arithmetic on the CPU; a CPU value read by a GPU kernel inserts a Memcpy,
    and a CUDA-graph session (+graphpick+cudagraphs) then refuses to load. The vocabulary size is a
    constant instead, so no pick node reads a shape."""
    for mode in MODES:
        fused = fuse(identity_model(), SPEC, "logits", mode)
        assert not [n.name for n in fused.graph.node if n.op_type in ("Shape", "Size")], mode
        last = {i.name: numpy_helper.to_array(i) for i in fused.graph.initializer}.get("pick/v_last")
        assert mode == "greedy" or last == V - 1, mode


# ---------------------------------------------------------------------- in exported step graphs

@pytest.fixture(scope="module", params=list(TINY))
def bundle(request, make_bundle):
    """The same 1-epoch tiny models as test_autoregressive (one session bundle each)."""
    return make_bundle(request.param, "names", epochs=1, **TINY[request.param]).bundle


CONTROLS = [{"temperature": 0.0}, {}, {"temperature": 0.7, "top_k": 5}, {"temperature": 1.3, "top_p": 0.8, "prefix": "Ma"}]


@pytest.mark.parametrize("backend", ["onnxruntime+graphpick", "onnxruntime+graphpick+iobinding"])
def test_fused_step_gives_the_same_text_as_the_host_pick_and_torch(bundle, backend):
    with Generator.load(bundle, backend="torch") as t, Generator.load(bundle, backend="onnxruntime") as o, \
            Generator.load(bundle, backend=backend) as g:
        assert g.backend.describe().count("+graphpick") == 1 and "+graphpick" not in o.backend.describe()
        for controls in CONTROLS:
            ref = o.generate({"locale": ["en_US", "de_DE", "ru_RU"]}, n=4, seed=11, **controls)
            got = g.generate({"locale": ["en_US", "de_DE", "ru_RU"]}, n=4, seed=11, **controls)
            assert got.texts == ref.texts, controls
            np.testing.assert_array_equal(got.data, ref.data)
            assert t.generate({"locale": ["en_US", "de_DE", "ru_RU"]}, n=4, seed=11, **controls).texts == ref.texts
        assert len({len(s) for s in got.texts}) > 1  # rows finished at different steps: the fused state was compacted
        step = bundle_step(g.bundle)
        used = {name.split(":")[1] for name in g.backend.sessions if name.startswith(step + "+pick:")}
        assert used == set(MODES)  # greedy, sample and full were each built (once) and used
        assert not g.backend.unfused
        if "+iobinding" in backend and step == "step":  # the RNN step repeats at a fixed batch: a persistent slot
            assert any(g.backend.slots.count(name) for name in g.backend.sessions if name.startswith("step+pick"))


def test_a_mixed_batch_equals_each_request_alone(bundle):
    """Batched serving: requests with different controls share one fused call per step (mode
    ``full`` for all of them) and each gets the text it gets alone."""
    with Generator.load(bundle, backend="onnxruntime+graphpick") as g:
        reqs = [({"locale": "en_US"}, 3, 1, {"temperature": 0.0}), ({"locale": "fr_FR"}, 2, 2, {"top_k": 4}),
                ({"locale": "ru_RU"}, 2, 3, {"temperature": 0.9, "top_p": 0.7, "max_new_tokens": 4})]
        together = g.generate_many([g.request(c, n=n, seed=s, **k) for c, n, s, k in reqs])
        for (c, n, s, k), batched in zip(reqs, together):
            assert batched.texts == g.generate(c, n=n, seed=s, **k).texts
        assert together[2].meta["tokens"] <= 8  # max_new_tokens=4 per sequence held inside the shared loop


def test_host_backends_keep_the_host_pick(bundle):
    """torch and plain onnxruntime return no fused graph: the sampler picks on the host."""
    for name in ("torch", "onnxruntime"):
        with open_backend(bundle, name) as backend:
            assert backend.fused_pick(bundle_step(bundle), "logits", "sample") is None


def bundle_step(b) -> str:
    graphs = b.sampler["graphs"]
    return graphs.get("step") or graphs["decode"]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["onnxruntime+graphpick", "onnxruntime+graphpick+cudagraphs"])
def test_gpu_fused_pick_gives_the_same_tokens(cuda, bundle, backend):
    """On the CUDA EP the pick runs in float64 on the GPU (and, with CUDA graphs, inside the
    replayed RNN step): still the host pick's tokens."""
    with Generator.load(bundle, backend="torch+cpu") as t, Generator.load(bundle, backend=backend) as g:
        assert g.backend.sessions[bundle_step(bundle)].get_providers()[0] == "CUDAExecutionProvider"
        for controls in CONTROLS:
            want = t.generate({"locale": ["en_US", "de_DE"]}, n=3, seed=4, **controls).texts
            assert g.generate({"locale": ["en_US", "de_DE"]}, n=3, seed=4, **controls).texts == want, controls
        # the pick adds no CPU node: a fused graph is refused CUDA graphs only where its step graph is
        # (the chartransformer's decode reads its past length through Shape into a position Gather)
        refused = g.backend.uncaptured
        assert all(name.split("+")[0] in refused for name in refused), refused
        assert bundle.family != "charrnn" or "+cudagraphs" not in backend or not refused, refused
