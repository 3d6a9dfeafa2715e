"""A small shared training loop: seeded mini-batches, Adam, a progress bar with the loss."""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

from genctl import progress


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def batches(arrays: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator):
    """Yield shuffled torch mini-batches of every array (same permutation)."""
    n = len(arrays[0])
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield [torch.from_numpy(a[idx]) for a in arrays]


def fit(model: torch.nn.Module, arrays: Sequence[np.ndarray], loss_fn: Callable[..., torch.Tensor], *,
        epochs: int, batch_size: int, lr: float, seed: int, description: str) -> dict:
    """Minimise ``loss_fn(model, *batch)`` over ``epochs``; return ``{"loss": last_epoch_mean, "seconds"}``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps = epochs * ((len(arrays[0]) + batch_size - 1) // batch_size)
    start, epoch_loss = time.perf_counter(), float("nan")
    model.train()
    with progress.bar(description, steps) as advance:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch in batches(arrays, batch_size, rng):
                loss = loss_fn(model, *batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + loss.item() * len(batch[0]), count + len(batch[0])
                advance(epoch=epoch + 1, loss=total / count)
            epoch_loss = total / count
    model.eval()
    return {"loss": epoch_loss, "seconds": round(time.perf_counter() - start, 1)}
