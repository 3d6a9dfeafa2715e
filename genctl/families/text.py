"""What the character language models share: the locale condition, text manifest info, training.

``TextFamily`` is the base of ``charrnn`` and ``chartransformer``; both train with next-token
cross-entropy on ``BOS name EOS`` sequences (``genctl.vocab``) and feed the autoregressive sampler.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genctl.conditions import Categorical, ConditionSchema
from genctl.families.base import Family
from genctl.families.loop import fit
from genctl.vocab import PAD

SAMPLER_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 0}


def context_length(config: dict) -> int:
    """Positions a model sees: BOS + the longest name (the EOS is predicted, never fed)."""
    return int(config["dataset"]["max_len"]) - 1


def condition_name(config: dict) -> str:
    """The condition's name: the dataset's (``language`` from a CSV header, ``label`` for a user file
    without one); ``locale`` for ``names`` and for checkpoints written before datasets named it."""
    return str(config["dataset"].get("condition_name", TextFamily.condition_name))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy; PAD targets (after EOS) are ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


class TextFamily(Family):
    """Shared by the character language models: locale condition, text manifest info, training."""

    sampler = "autoregressive"
    data_kind = "text"
    condition_name = "locale"  # the shipped names dataset's; a user dataset's own name wins (``condition_name(config)``)

    def conditions(self, config: dict) -> ConditionSchema:
        return ConditionSchema([Categorical(name=condition_name(config), names=tuple(config["dataset"]["label_names"]))])

    def info(self, config: dict) -> dict:
        ds = config["dataset"]
        text = {"kind": "text", "vocab": ds["vocab"], "special_tokens": ds["special_tokens"],
                "max_len": ds["max_len"], "context": context_length(config)}
        return {"output": text, **text}

    def train(self, model: nn.Module, dataset, config: dict, epochs: int) -> dict:
        hp = self.Config(**config["hparams"])
        x, y = dataset.x_train, dataset.y_train
        if hp.train_subset:  # tests: a seeded subset for speed
            idx = np.random.default_rng(0).permutation(len(y))[:hp.train_subset]
            x, y = x[idx], y[idx]

        def loss(m, tokens, locale):
            return lm_loss(m(tokens[:, :-1], locale), tokens[:, 1:])  # (B, T-1, V) vs next tokens

        metrics = fit(model, [x, y], loss, epochs=epochs, batch_size=hp.batch_size, lr=hp.lr,
                      seed=config["train"]["seed"], description=f"train {self.name}")
        metrics["val_loss"] = round(validation_loss(model, dataset), 4)
        return metrics


@torch.inference_mode()
def validation_loss(model: nn.Module, dataset) -> float:
    model.eval()
    x, y = torch.from_numpy(dataset.x_test), torch.from_numpy(dataset.y_test)
    return float(lm_loss(model(x[:, :-1], y), x[:, 1:]))
