"""Shared fixtures: a tiny cVAE trained on digits and exported once per session; GPU gates."""
from __future__ import annotations

import os

import pytest

from genctl import progress


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Evaluators are cached under GENCTL_CACHE; tests keep theirs out of the user's home."""
    os.environ["GENCTL_CACHE"] = str(tmp_path_factory.mktemp("genctl-cache"))
    progress.ENABLED = False
    yield


@pytest.fixture(scope="session")
def cvae_checkpoint(tmp_path_factory):
    from genctl.training.train import train

    out = tmp_path_factory.mktemp("ckpt") / "cvae"
    train("cvae", "digits", out, epochs=4, seed=0)
    return out


@pytest.fixture(scope="session")
def cvae_bundle(cvae_checkpoint, tmp_path_factory):
    from genctl.export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "cvae"
    export_bundle(cvae_checkpoint, out)
    return out


@pytest.fixture()
def cuda():
    """Skip unless torch sees a CUDA GPU and ONNX Runtime can use it (``pytest -m gpu`` on a GPU box)."""
    import torch

    from genctl.runtime.devices import onnxruntime_providers

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    if "CUDAExecutionProvider" not in onnxruntime_providers()[1]:
        pytest.skip("onnxruntime has no usable CUDAExecutionProvider (install onnxruntime-gpu)")


@pytest.fixture()
def tensorrt():
    """Skip unless torch sees a CUDA GPU and TensorRT 10+ is importable."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    trt = pytest.importorskip("tensorrt")
    if int(trt.__version__.split(".")[0]) < 10:
        pytest.skip(f"tensorrt {trt.__version__} < 10")
    return trt
