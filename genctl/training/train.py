"""``genctl train``: family + dataset → checkpoint folder."""
from __future__ import annotations

from pathlib import Path

from genctl.checkpoint import save_checkpoint
from genctl.checks import check_seed
from genctl.data import get_dataset
from genctl.errors import GenctlError
from genctl.families import get_family
from genctl.families.loop import seed_everything
from genctl.io import check_output_dir

MAX_EPOCHS = 10_000  # recipes use 12-40; a larger number is a typo that would train for days


def train(family_name: str, dataset_name: str, out: str | Path, *, epochs: int | None = None, seed: int = 0,
          overwrite: bool = False, hparams: dict | None = None) -> dict:
    """Train and save; returns the checkpoint config (with training metrics under ``train``)."""
    family, dataset = check_train(family_name, dataset_name, out, epochs=epochs, seed=seed, overwrite=overwrite)
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
    if dataset.kind != family.data_kind:
        raise GenctlError(f"Dataset '{dataset_name}' for family '{family_name}'", got=f"a {dataset.kind} dataset",
                          expected=f"a {family.data_kind} dataset")
    return family, dataset
