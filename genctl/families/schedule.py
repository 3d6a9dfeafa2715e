"""Diffusion scheduler math, written once.

Host side (numpy): the noise schedule, the timestep sequence of a sampling run and each step's
coefficients ``alpha_bar_t`` / ``alpha_bar_prev``. Graph side (torch): the forward process used in
training, the classifier-free guidance combination and the DDIM update. The exported ``step``
graph and the torch reference backend run the very same ``ddim_update`` (the torch backend runs the
module that was exported), so the two cannot drift.

Notation (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"):
    beta_t            variance added at step t, t = 0..T-1 (the papers count 1..T)
    alpha_t           1 - beta_t
    alpha_bar_t       prod_{s <= t} alpha_s                 (DDPM's \\bar{alpha}_t, DDIM's alpha_t)
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCHEDULES = ("linear", "cosine")


# ------------------------------------------------------------------------------------ host side

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


# ----------------------------------------------------------------------------------- graph side

def _col(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1): per-sample coefficients broadcast over pixels


def q_sample(x0: torch.Tensor, alpha_bar_t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process, DDPM eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    ab = _col(alpha_bar_t)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 with w' = 1 + w):
    eps = eps_uncond + w (eps_cond - eps_uncond); w=0 unconditional, w=1 conditional, w>1 guided."""
    return eps_uncond + _col(guidance_scale) * (eps_cond - eps_uncond)


def ddim_update(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor,
                eta: torch.Tensor, noise: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """One DDIM step x_t -> x_prev (Song et al. 2021, eq. 12 with sigma_t(eta) of eq. 16).

    eta = 0 is deterministic DDIM; eta = 1 gives sigma_t^2 = beta~_t (DDPM eq. 7), and the update
    equals DDPM's ancestral step (eq. 11 / Algorithm 2) on the same timestep sequence — so "ddpm"
    sampling is this function with eta = 1 and fresh ``noise`` every step. Every coefficient is a
    (B,) tensor so one graph serves any per-sample schedule. Square roots are clamped at 0: exact
    schedules never go below, and it keeps arbitrary (e.g. parity-test) inputs finite.
    """
    ab_t, ab_prev = _col(alpha_bar_t), _col(alpha_bar_prev)
    # 1. predicted x_0 ("predicted x_0" term of eq. 12, i.e. DDPM eq. 15 solved for x_0)
    x0 = (x_t - (1 - ab_t).clamp(min=0).sqrt() * eps) / ab_t.sqrt()
    if clip:
        # 2. clip x_0 to the data range and re-derive eps from it, so steps 4-5 stay consistent
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).clamp(min=1e-12).sqrt()
    # 3. sigma_t(eta) = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)   (eq. 16)
    var = ((1 - ab_prev) / (1 - ab_t).clamp(min=1e-12)).clamp(min=0) * (1 - ab_t / ab_prev).clamp(min=0)
    sigma = _col(eta) * var.sqrt()
    # 4. "direction pointing to x_t": sqrt(1 - a_prev - sigma_t^2) eps               (eq. 12)
    direction = (1 - ab_prev - sigma * sigma).clamp(min=0).sqrt() * eps
    # 5. x_prev = sqrt(a_prev) x_0 + direction + sigma_t z                            (eq. 12)
    return ab_prev.sqrt() * x0 + direction + sigma * noise
