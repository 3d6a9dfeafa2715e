"""Checkpoints: ``model.safetensors`` + ``config.json`` (family, hyper-parameters, dataset info).

Never pickle: weights load with safetensors, and the config carries everything needed to rebuild
the module, so loading needs no outside knowledge (nanoGPT-style).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from genctl.errors import BundleError
from genctl.io import atomic_dir

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def save_checkpoint(out: Path, model: torch.nn.Module, config: dict, *, overwrite: bool = False) -> Path:
    """Write ``out/{config.json, model.safetensors}`` atomically."""
    with atomic_dir(Path(out), overwrite=overwrite, what="checkpoint") as tmp:
        write_checkpoint_files(tmp, model, config)
    return Path(out)


def write_checkpoint_files(folder: Path, model: torch.nn.Module, config: dict) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # serialise in memory and write with Python's I/O: a failed write is then an OSError (one-line
    # error from atomic_dir), not safetensors' own exception
    (folder / WEIGHTS).write_bytes(save(state))
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(config, state_dict)``; a missing or unreadable checkpoint is a BundleError."""
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG, folder / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise BundleError(f"Checkpoint '{folder}'", got="no config.json + model.safetensors",
                          expected="a folder written by 'genctl train'")
    try:
        config = json.loads(cfg_path.read_text())
        state = load_file(str(w_path))
    except Exception as exc:  # corrupted JSON or safetensors header
        raise BundleError(f"Checkpoint '{folder}'", got=f"unreadable files ({type(exc).__name__})",
                          expected="valid config.json and model.safetensors") from None
    if "family" not in config:
        raise BundleError(f"Checkpoint config '{cfg_path}'", got="no 'family' key", expected="a genctl checkpoint config")
    return config, state
