"""Training of the ``ntm`` family: time-budgeted, one random batch per iteration, a learning curve.

Bits (copy / repeat copy, as the paper): batch 32, one random length and repeat count per batch,
Adam 1e-3, gradient norm clipped at 10, binary cross-entropy on the bits and the end marker of the
output phase. Optional curriculum over lengths (``curriculum``). Names: next-character
cross-entropy on random mini-batches of the names, the same loop. The step runs under
``torch.compile`` when it compiles (the paper-size model trained ~2x faster so on this CPU box),
else eagerly; the whole loop stops at ``epochs x iters_per_epoch`` iterations (bits; names: epochs
over the data) or at ``max_seconds`` of wall-clock time, compilation included.

The checkpoint's ``config.json`` holds the learning curve (``learning_curve``: ``[iteration, seconds,
train bit error, loss, longest length]`` every ``curve_every`` iterations, averaged over them).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from genctl import progress
from genctl.families.ntm import NTMConfig, NTMModel, parameter_count
from genctl.families.text import lm_loss

RECIPE_SECONDS = {"copy": 600.0, "repeat-copy": 600.0, "names": 540.0}


def compiled_step(model: NTMModel, enabled: bool):
    """``(step, how)``: ``torch.compile(model.step)`` if it compiles and runs here, else the eager step."""
    if not enabled:
        return model.step, "eager"
    try:
        step = torch.compile(model.step, dynamic=False)
        return step, "torch.compile"
    except Exception as exc:  # compile unavailable (no C compiler, unsupported platform)
        return model.step, f"eager (torch.compile failed: {type(exc).__name__})"


def budget(hp: NTMConfig, dataset_name: str) -> float:
    return float(hp.max_seconds or RECIPE_SECONDS.get(dataset_name, 600.0))


def update(model, opt, loss: torch.Tensor, hp: NTMConfig, fraction: float) -> None:
    """One optimiser step: backward, clip the gradient norm, the learning rate for ``fraction`` of the budget, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), hp.clip)
    set_lr(opt, hp, fraction)
    opt.step()


def set_lr(opt, hp: NTMConfig, fraction: float) -> None:
    """Cosine decay from ``lr`` to ``lr_final`` over the time budget (``fraction`` of it spent)."""
    if hp.lr_final is not None:
        lr = hp.lr_final + (hp.lr - hp.lr_final) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))
        for group in opt.param_groups:
            group["lr"] = lr


def output_phase(tokens: torch.Tensor, targets: torch.Tensor) -> slice:
    """The steps whose outputs are the answer: from the DELIM step (``BOS x1..xL DELIM``) to the last, L*R + 1 of them."""
    return slice(tokens.shape[1] - targets.shape[1], tokens.shape[1])


def bits_loss(model: NTMModel, tokens: torch.Tensor, cond: torch.Tensor, targets: torch.Tensor, step):
    """``(loss, bit error)``: BCE on the output phase (every step from DELIM on), bit error on its vectors."""
    ys = model(tokens, cond, step)  # (B, T, 9): feeding DELIM predicts y1, feeding y_k predicts y_k+1, feeding the last y the end
    out = ys[:, output_phase(tokens, targets)]  # (B, L*R + 1, 9) the predictions from DELIM on
    loss = F.binary_cross_entropy_with_logits(out, targets)
    with torch.no_grad():
        width = targets.shape[2] - 1
        error = ((out[:, :-1, :width] > 0).float() != targets[:, :-1, :width]).float().mean()
    return loss, error


def train_bits(model: NTMModel, dataset, config: dict, epochs: int) -> dict:
    hp = NTMConfig(**config["hparams"])
    rng = np.random.default_rng(config["train"]["seed"])
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    step, how = compiled_step(model, hp.compile)
    seconds, total = budget(hp, dataset.name), epochs * hp.iters_per_epoch
    longest = hp.curriculum or dataset.lengths[1]
    curve, window, start, it = [], [], time.perf_counter(), 0
    model.train()
    with progress.bar(f"train ntm on {dataset.name} ({seconds:.0f} s budget)", total) as advance:
        while it < total and time.perf_counter() - start < seconds:
            tokens, cond, targets = (torch.from_numpy(a) for a in dataset.batch(rng, hp.batch_size, max_length=longest))
            try:
                loss, error = bits_loss(model, tokens, cond, targets, step)
            except Exception as exc:  # a compile failure surfaces at the first call
                if step is model.step:
                    raise
                step, how = model.step, f"eager (torch.compile failed: {type(exc).__name__})"
                loss, error = bits_loss(model, tokens, cond, targets, step)
            update(model, opt, loss, hp, (time.perf_counter() - start) / seconds)
            it += 1
            window.append((float(error), float(loss.detach())))
            if it % hp.curve_every == 0:
                err, mean_loss = np.mean(window, axis=0)
                curve.append([it, round(time.perf_counter() - start, 1), round(float(err), 5), round(float(mean_loss), 5), longest])
                if hp.curriculum and err < hp.curriculum_error and longest < dataset.lengths[1]:
                    longest += 1
                window = []
            advance(loss=float(loss.detach()), bit_error=float(error), length=longest)
    model.eval()
    config["learning_curve"] = {"columns": ["iteration", "seconds", "bit_error", "loss", "max_length"], "points": curve}
    return {"iterations": it, "seconds": round(time.perf_counter() - start, 1), "step": how, "parameters": parameter_count(model),
            "final_bit_error": curve[-1][2] if curve else float(np.mean([w[0] for w in window] or [float("nan")]))}


def train_text(model: NTMModel, dataset, config: dict, epochs: int) -> dict:
    hp = NTMConfig(**config["hparams"])
    rng = np.random.default_rng(config["train"]["seed"])
    x, y = dataset.x_train, dataset.y_train
    if hp.train_subset:
        idx = rng.permutation(len(y))[:hp.train_subset]
        x, y = x[idx], y[idx]
    width = int((x != 0).sum(axis=1).max())  # longest sequence: no step on all-PAD columns
    x = x[:, :width]
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    step, how = compiled_step(model, hp.compile)
    seconds = budget(hp, dataset.name)
    total = epochs * ((len(y) + hp.batch_size - 1) // hp.batch_size)
    curve, window, start, it = [], [], time.perf_counter(), 0
    model.train()
    with progress.bar(f"train ntm on {dataset.name} ({seconds:.0f} s budget)", total) as advance:
        while it < total and time.perf_counter() - start < seconds:
            for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // hp.batch_size)):
                if len(idx) != hp.batch_size:  # one shape for the compiled step
                    idx = np.resize(idx, hp.batch_size)
                tokens, cond = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
                try:
                    loss = lm_loss(model(tokens[:, :-1], cond, step), tokens[:, 1:])
                except Exception as exc:
                    if step is model.step:
                        raise
                    step, how = model.step, f"eager (torch.compile failed: {type(exc).__name__})"
                    loss = lm_loss(model(tokens[:, :-1], cond, step), tokens[:, 1:])
                update(model, opt, loss, hp, (time.perf_counter() - start) / seconds)
                it += 1
                window.append(float(loss.detach()))
                if it % hp.curve_every == 0:
                    curve.append([it, round(time.perf_counter() - start, 1), round(float(np.mean(window)), 5)])
                    window = []
                advance(loss=float(loss.detach()))
                if it >= total or time.perf_counter() - start >= seconds:
                    break
    model.eval()
    config["learning_curve"] = {"columns": ["iteration", "seconds", "loss"], "points": curve}
    return {"iterations": it, "seconds": round(time.perf_counter() - start, 1), "step": how, "parameters": parameter_count(model),
            "loss": curve[-1][2] if curve else float(np.mean(window or [float("nan")])), "val_loss": round(validation_loss(model, dataset), 4)}


@torch.inference_mode()
def validation_loss(model: NTMModel, dataset) -> float:
    model.eval()
    x, y = torch.from_numpy(dataset.x_test), torch.from_numpy(dataset.y_test)
    width = int((x != 0).sum(dim=1).max())
    x = x[:, :width]
    return float(lm_loss(model(x[:, :-1], y), x[:, 1:]))
