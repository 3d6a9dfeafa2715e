"""Diffusion schedule math on the host (numpy), written once for training, export and sampling.

The noise schedule, the timestep sequence of a sampling run and each step's coefficients
``alpha_bar_t`` / ``alpha_bar_prev``. The graph side (forward process, guidance, the DDIM update in
torch) is ``genctl.families.schedule``; this half has no torch, so the diffusion sampler imports
it without loading any family.

Notation (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"):
    beta_t            variance added at step t, t = 0..T-1 (the papers count 1..T)
    alpha_t           1 - beta_t
    alpha_bar_t       prod_{s <= t} alpha_s                 (DDPM's \\bar{alpha}_t, DDIM's alpha_t)
"""
from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("linear", "cosine")


def betas_for(kind: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """The beta_t of a named schedule, float64 (T,).

    ``linear``: DDPM sec. 4, beta from 1e-4 to 0.02 over T=1000 (rescaled by 1000/T so a shorter
    schedule destroys the signal as completely). ``cosine``: Nichol & Dhariwal 2021, eq. 17.
    """
    if kind == "linear":
        scale = 1000.0 / timesteps
        return np.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=np.float64)
    if kind == "cosine":
        s = 0.008
        f = lambda t: math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - f(t + 1) / f(t), 0.999) for t in range(timesteps)], dtype=np.float64)
    raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s)  (DDPM, the line above eq. 4), float64 (T,)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def timesteps(train_timesteps: int, steps: int) -> np.ndarray:
    """The ``steps`` timesteps of a sampling run, descending, int64 (steps,).

    Evenly spaced from T-1 down to 0 ("trailing" spacing: the first step starts from pure noise at
    the last training timestep). ``steps == T`` visits every timestep (full DDPM / DDIM).
    """
    return np.round(np.linspace(train_timesteps - 1, 0, steps)).astype(np.int64)


def step_coefficients(alpha_bar: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_bar_t, alpha_bar_prev) per step, float32 (steps,) each.

    ``alpha_bar_prev`` of step i is alpha_bar at the next timestep of the run; after the last one
    it is 1 (x_{-1} is the clean sample, DDIM's alpha_0 := 1), so the last update returns the
    predicted x_0.
    """
    ab_t = alpha_bar[ts]
    ab_prev = np.concatenate([alpha_bar[ts[1:]], [1.0]])
    return ab_t.astype(np.float32), ab_prev.astype(np.float32)
