"""``genctl train``: family + dataset → checkpoint folder."""
from __future__ import annotations

from pathlib import Path

from genctl.data import get_dataset
from genctl.errors import GenctlError
from genctl.families import get_family
from genctl.io import check_writable_parent
from genctl.training.checkpoint import save_checkpoint
from genctl.training.loop import seed_everything


def train(family_name: str, dataset_name: str, out: str | Path, *, epochs: int | None = None, seed: int = 0,
          overwrite: bool = False, hparams: dict | None = None) -> dict:
    """Train and save; returns the checkpoint config (with training metrics under ``train``)."""
    family = get_family(family_name)
    if epochs is not None and epochs <= 0:
        raise GenctlError("--epochs", got=epochs, expected="a positive integer")
    out = Path(out)
    if out.exists() and not overwrite:
        raise GenctlError(f"Output checkpoint '{out}'", got="an existing path", expected="a new path", fix="pass --force to replace it")
    check_writable_parent(out, "checkpoint")
    dataset = get_dataset(dataset_name)
    if dataset.kind != family.data_kind:
        raise GenctlError(f"Dataset '{dataset_name}' for family '{family_name}'", got=f"a {dataset.kind} dataset",
                          expected=f"a {family.data_kind} dataset")
    epochs = epochs or family.default_epochs.get(dataset_name, 10)
    config = family.make_config(dataset.info(), hparams)
    config["train"] = {"epochs": epochs, "seed": seed}
    seed_everything(seed)
    model = family.build_model(config)
    config["train"].update(family.train(model, dataset, config, epochs))
    save_checkpoint(out, model, config, overwrite=overwrite)
    return config
