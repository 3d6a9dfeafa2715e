"""cGAN end to end on digits: train a tiny model, export, same seed same samples on torch and ORT."""
import numpy as np
import pytest
import torch

import genctl
from genctl.export.parity import scaled_error
from genctl.families import get_family

TINY = {"latent_dim": 8, "width": 8, "label_dim": 8}


@pytest.fixture(scope="module")
def cgan_bundle(make_bundle):
    trained = make_bundle("cgan", epochs=2, **TINY)
    assert trained.config["train"]["seconds"] > 0 and np.isfinite(trained.config["train"]["d_loss"])
    return trained.path


@pytest.fixture(scope="module")
def gens(cgan_bundle):
    with genctl.load(cgan_bundle, backend="torch") as t, genctl.load(cgan_bundle, backend="onnxruntime") as o:
        yield t, o


def test_manifest_exports_only_the_generator(gens):
    bundle = gens[1].bundle
    assert bundle.family == "cgan" and list(bundle.graphs) == ["sample"]
    spec = bundle.graphs["sample"]
    assert [(t.name, t.dtype, t.shape, t.role) for t in spec.inputs] == [
        ("noise", "float32", ["batch", 8], "noise"), ("label", "int64", ["batch"], "condition")]
    assert [(t.name, t.shape) for t in spec.outputs] == [("sample", ["batch", 1, 8, 8])]
    assert bundle.sampler == {"kind": "oneshot", "graph": "sample", "defaults": {"temperature": 1.0}}
    parity = bundle.manifest["parity"]
    assert parity["graphs"]["sample"]["passed"] and parity["loop"]["passed"]


def test_same_seed_same_samples_on_torch_and_onnxruntime(gens):
    t, o = gens
    a = t.generate({"label": [0, 9]}, n=6, seed=42, temperature=0.7)
    b = o.generate({"label": [0, 9]}, n=6, seed=42, temperature=0.7)
    assert a.data.shape == (12, 1, 8, 8) and a.rows == ["label=0", "label=9"]
    assert scaled_error(b.data, a.data) <= 1e-4
    assert a.data.min() >= -1.0 and a.data.max() <= 1.0  # tanh output


def test_labels_and_seeds_change_the_samples(gens):
    _, o = gens
    base = o.generate({"label": 3}, n=4, seed=0).data
    assert not np.allclose(base, o.generate({"label": 7}, n=4, seed=0).data, atol=1e-3)
    assert not np.allclose(base, o.generate({"label": 3}, n=4, seed=1).data, atol=1e-3)


def test_generator_matches_the_torch_module(gens, cgan_bundle):
    """The exported graph is the checkpoint's generator: rebuild it and compare one call."""
    from genctl.checkpoint import load_checkpoint

    config, state = load_checkpoint(cgan_bundle / "source")
    model = get_family("cgan").build_model(config)
    model.load_state_dict(state)
    model.eval()
    noise, label = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32), np.arange(5)
    with torch.no_grad():
        ref = model.generator(torch.from_numpy(noise), torch.from_numpy(label)).numpy()
    got = gens[1].backend.run("sample", {"noise": noise, "label": label})["sample"]
    assert scaled_error(got, ref) <= 1e-4


def test_wrong_noise_size_is_a_one_line_error(gens):
    feeds = {"noise": np.zeros((2, 5), np.float32), "label": np.zeros(2, np.int64)}
    with pytest.raises(genctl.GenctlError, match=r"Input 'noise' of graph 'sample' \| got shape \(2, 5\) \| expected"):
        gens[1].backend.run("sample", feeds)
