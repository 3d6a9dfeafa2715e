"""Shared fixtures: trained-and-exported bundles made once per session (``make_bundle``), bundle copies, GPU gates."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from genctl import progress


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Evaluators are cached under GENCTL_CACHE; tests keep theirs out of the user's home."""
    os.environ["GENCTL_CACHE"] = str(tmp_path_factory.mktemp("genctl-cache"))
    progress.ENABLED = False
    yield


@dataclass(frozen=True)
class Trained:
    """What ``make_bundle`` made: the training checkpoint, the exported bundle and ``train()``'s config."""

    checkpoint: Path
    path: Path  # the bundle folder
    config: dict

    @property
    def bundle(self):
        """The exported bundle, loaded afresh (what ``export_bundle`` returns), so no test shares one object."""
        from genctl.bundle import Bundle

        return Bundle.load(self.path)


@pytest.fixture(scope="session")
def make_bundle(tmp_path_factory):
    """``make_bundle(family, dataset="digits", *, epochs, seed=0, **hparams) -> Trained``.

    Trains ``family`` on ``dataset`` and exports it, once per distinct argument set in the session: test
    files that ask for the same settings share one bundle. ``epochs=0`` exports an untrained model instead
    (real graphs and specs in seconds, for tests that only need the graphs). The bundle is shared: tests
    that write into it (builds, tampering) work on a ``copy_bundle`` / ``tampered_copy``.
    """
    from genctl.export import export_bundle

    made: dict[tuple, Trained] = {}

    def make(family: str, dataset: str = "digits", *, epochs: int, seed: int = 0, **hparams) -> Trained:
        key = (family, dataset, epochs, seed, json.dumps(hparams, sort_keys=True))
        if key not in made:
            root = tmp_path_factory.mktemp(f"{family}-{dataset}-e{epochs}-s{seed}-")
            if epochs:
                config = _train(family, dataset, root / "ckpt", epochs, seed, hparams)
            else:
                config = _untrained(family, dataset, root / "ckpt", seed, hparams)
            export_bundle(root / "ckpt", root / "bundle")
            made[key] = Trained(root / "ckpt", root / "bundle", config)
        return made[key]

    return make


def _train(family: str, dataset: str, out: Path, epochs: int, seed: int, hparams: dict) -> dict:
    from genctl.training.train import train

    return train(family, dataset, out, epochs=epochs, seed=seed, hparams=hparams or None)


def _untrained(family_name: str, dataset: str, out: Path, seed: int, hparams: dict) -> dict:
    """A freshly built (untrained) model saved as a checkpoint: real graphs and specs, no training run."""
    from genctl.checkpoint import save_checkpoint
    from genctl.data import get_dataset
    from genctl.families import get_family
    from genctl.families.loop import seed_everything

    family = get_family(family_name)
    config = family.make_config(get_dataset(dataset).info(), hparams)
    config["train"] = {"epochs": 0, "seed": seed}
    seed_everything(seed)
    save_checkpoint(out, family.build_model(config), config)
    return config


@pytest.fixture(scope="session")
def copy_bundle(tmp_path_factory):
    """``copy_bundle(src, name="bundle") -> Path``: a fresh copy of a bundle folder, for tests that write into it."""

    def copy(src: Path, name: str = "bundle") -> Path:
        dst = tmp_path_factory.mktemp("copy") / name
        shutil.copytree(src, dst)
        return dst

    return copy


@pytest.fixture(scope="session")
def tampered_copy(copy_bundle):
    """``tampered_copy(src, graph="decode") -> Path``: a copy of the bundle with one byte of ``graph``'s ONNX file
    flipped (its manifest sha256 no longer matches)."""

    def tampered(src: Path, graph: str = "decode") -> Path:
        dst = copy_bundle(src)
        path = dst / "graphs" / f"{graph}.onnx"
        data = bytearray(path.read_bytes())
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
        return dst

    return tampered


@pytest.fixture(scope="session")
def cvae_trained(make_bundle) -> Trained:
    return make_bundle("cvae", epochs=4)


@pytest.fixture(scope="session")
def cvae_checkpoint(cvae_trained) -> Path:
    return cvae_trained.checkpoint


@pytest.fixture(scope="session")
def cvae_bundle(cvae_trained) -> Path:
    return cvae_trained.path


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
