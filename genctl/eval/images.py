"""Control accuracy and diversity for image families.

The evaluator is a small CNN genctl trains on the bundle's dataset (train split) and caches under
``$GENCTL_CACHE`` (default ``~/.cache/genctl``) as safetensors + JSON; its accuracy on the
held-out split is reported beside the generated samples' accuracy, so the number has a ceiling.
A user dataset (a path, ``genctl/eval/dataset.py``) is cached under its content hash
(``evaluators/user-<name>-<sha256[:16]>-v1``): edited data trains a new evaluator.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from genctl.data import get_dataset
from genctl.families.loop import fit, seed_everything
from genctl.io import write_error

EVALUATOR_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("GENCTL_CACHE", Path.home() / ".cache" / "genctl"))


class Evaluator(nn.Module):
    """Two conv layers + MLP; ~99% on mnist-5k held-out, ~97% on digits."""

    def __init__(self, shape: list[int], n_classes: int):
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.inference_mode()
    def predict(self, images: np.ndarray, batch: int = 512) -> np.ndarray:
        self.eval()
        out = [self(torch.from_numpy(np.ascontiguousarray(images[i:i + batch], dtype=np.float32))).argmax(1).numpy()
               for i in range(0, len(images), batch)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


MIN_STEPS = 300  # a small user dataset trains more epochs, so the evaluator sees at least this many batches
MAX_EPOCHS = 200


def evaluator_folder(dataset_name: str, ds) -> Path:
    """Cache folder: the shipped dataset's name, or a user dataset's name + content hash."""
    if getattr(ds, "content_hash", None):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(ds.name).removeprefix("user:"))[:40]
        return cache_dir() / "evaluators" / f"user-{stem}-{ds.content_hash[:16]}-v{EVALUATOR_VERSION}"
    return cache_dir() / "evaluators" / f"{dataset_name}-v{EVALUATOR_VERSION}"


def load_evaluator(dataset_name: str, epochs: int = 8) -> tuple[Evaluator, dict]:
    """The cached evaluator for ``dataset_name`` — a shipped name or a user dataset's path — (trained on
    first use, ~30 s on mnist)."""
    from genctl.eval.dataset import split_note

    ds = get_dataset(dataset_name)
    folder = evaluator_folder(dataset_name, ds)
    model = Evaluator(list(ds.shape), len(ds.label_names))
    if (folder / "info.json").is_file() and (folder / "model.safetensors").is_file():
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval(), json.loads((folder / "info.json").read_text())
    if getattr(ds, "content_hash", None):  # user data can be small: enough epochs for MIN_STEPS batches
        epochs = min(MAX_EPOCHS, max(epochs, math.ceil(MIN_STEPS / max(1, math.ceil(len(ds.y_train) / 64)))))
    seed_everything(0)
    loss = nn.CrossEntropyLoss()
    fit(model, [ds.x_train, ds.y_train], lambda m, x, y: loss(m(x), y), epochs=epochs, batch_size=64, lr=1e-3,
        seed=0, description=f"evaluator ({ds.name})")
    info = {"dataset": ds.name, "test_accuracy": float((model.predict(ds.x_test) == ds.y_test).mean()),
            "epochs": epochs, "version": EVALUATOR_VERSION, "split": split_note(ds)}
    if getattr(ds, "content_hash", None):
        info.update(path=ds.source, content_hash=ds.content_hash)
    try:  # info.json last: a cache missing it is retrained, never half-read
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(save({k: v.contiguous() for k, v in model.state_dict().items()}))
        (folder / "info.json").write_text(json.dumps(info, indent=2))
    except OSError as exc:
        raise write_error(folder, "evaluator cache (GENCTL_CACHE)", exc) from None
    return model.eval(), info


def diversity(images: np.ndarray, pairs: int = 2000, seed: int = 0) -> float:
    """Mean L2 distance between random pairs of images (per pixel RMS), within one condition."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    if len(flat) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(flat), pairs), rng.integers(0, len(flat), pairs)
    keep = a != b
    return float(np.sqrt(((flat[a[keep]] - flat[b[keep]]) ** 2).mean(axis=1)).mean())


def control_accuracy(generator, n_per_class: int, seed: int = 0, dataset: str | None = None, **controls) -> dict:
    """Generate ``n_per_class`` samples per class, classify them, report per-class and mean accuracy.

    Also reports diversity of generated vs real images of the same class (same metric), so mode
    collapse shows up as a ratio well below 1. ``dataset``: the labelled data to judge by (a
    shipped name or a path; default the bundle's own, ``genctl.eval.dataset.evaluation_dataset``).
    """
    from genctl.eval.dataset import evaluation_dataset

    bundle = generator.bundle
    dataset_name = dataset or evaluation_dataset(bundle)
    evaluator, info = load_evaluator(dataset_name)
    cond = bundle.conditions.conditions[0]
    samples = generator.generate({cond.name: list(range(len(cond.names)))}, n=n_per_class, seed=seed, **controls)
    images = samples.data.reshape(len(cond.names), n_per_class, *samples.data.shape[1:])
    real = get_dataset(dataset_name)
    per_class, div_gen, div_real = {}, [], []
    for k, name in enumerate(cond.names):
        per_class[name] = float((evaluator.predict(images[k]) == k).mean())
        div_gen.append(diversity(images[k], seed=k))
        div_real.append(diversity(real.x_test[real.y_test == k], seed=k))
    return {"n_per_class": n_per_class, "seed": seed, "controls": controls, "per_class": per_class,
            "mean_accuracy": float(np.mean(list(per_class.values()))),
            "evaluator_test_accuracy": info["test_accuracy"], "evaluator_data": info.get("split", real.name),
            "diversity": float(np.mean(div_gen)), "diversity_real": float(np.mean(div_real))}
