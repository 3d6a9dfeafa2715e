"""``genctl train``: family + dataset → checkpoint folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from genctl.checkpoint import save_checkpoint
from genctl.checks import check_seed
from genctl.data import get_dataset
from genctl.errors import GenctlError
from genctl.families import get_family
from genctl.families.loop import seed_everything
from genctl.io import check_output_dir

MAX_EPOCHS = 10_000  # recipes use 12-40; a larger number is a typo that would train for days


def train(family_name: str, dataset_name: str, out: str | Path, *, epochs: int | None = None, seed: int = 0,
          overwrite: bool = False, hparams: dict | None = None, note: Callable[[str], None] | None = None) -> dict:
    """Train and save; returns the checkpoint config (with training metrics under ``train``).

    ``note``: called with each one-line note on the data before training (``genctl train`` prints them,
    e.g. how many non-image files of a class folder were skipped); without it the library prints nothing.
    """
    family, dataset = check_train(family_name, dataset_name, out, epochs=epochs, seed=seed, overwrite=overwrite)
    if note is not None:
        from genctl.data.user import dataset_notes

        for line in dataset_notes(dataset):
            note(line)
    out = Path(out)
    epochs = epochs or family.default_epochs.get(dataset_name, 10)
    config = family.make_config(dataset.info(), hparams)
    config["train"] = {"epochs": epochs, "seed": seed}
    seed_everything(seed)
    model = family.build_model(config)
    config["train"].update(family.train(model, dataset, config, epochs))
    save_checkpoint(out, model, config, overwrite=overwrite)
    return config


def check_train(family_name: str, dataset_name: str, out: str | Path, *, epochs: int | None = None, seed: int = 0,
                overwrite: bool = False) -> tuple:
    """Everything ``train`` can know before training: names, ranges, the output folder. Returns (family, dataset)."""
    family = get_family(family_name)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 < epochs <= MAX_EPOCHS):
        raise GenctlError("--epochs", got=repr(epochs), expected=f"an integer in 1..{MAX_EPOCHS}")
    check_seed(seed)
    check_output_dir(out, "checkpoint", overwrite=overwrite)
    dataset = get_dataset(dataset_name)
    kinds = family.data_kind if isinstance(family.data_kind, tuple) else (family.data_kind,)  # ntm: bits or text
    if dataset.kind not in kinds:
        raise GenctlError(f"Dataset '{dataset_name}' for family '{family_name}'", got=f"{_a(dataset.kind)} {dataset.kind} dataset",
                          expected=" or ".join(f"{_a(k)} {k} dataset" for k in kinds))
    classes = list(dataset.label_names)
    if family.label_conditioned and len(classes) < 2:
        raise GenctlError(f"Dataset '{dataset_name}' for family '{family_name}'",
                          got=f"{len(classes)} class{'' if len(classes) == 1 else 'es'} ({', '.join(map(repr, classes)) or 'none'})",
                          expected="at least two classes (a conditional model is conditioned on the class)",
                          fix="add a class sub-folder (or label) per class")
    return family, dataset


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
