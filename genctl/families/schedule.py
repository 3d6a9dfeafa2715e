"""Diffusion scheduler math, graph side (torch); the host side is ``genctl.schedule``.

The forward process used in training, the classifier-free guidance combination and the step
update (``solver_update``: DDIM / DDPM, and DPM-Solver++(2M) on top of it). The host side (noise
schedule, timestep sequence, per-step coefficients) is re-exported here so a family needs one
import. The exported ``step`` graph and the torch reference backend run the very same
``solver_update`` (the torch backend runs the module that was exported), so the two cannot drift.

Notation (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"):
    beta_t            variance added at step t, t = 0..T-1 (the papers count 1..T)
    alpha_t           1 - beta_t
    alpha_bar_t       prod_{s <= t} alpha_s                 (DDPM's \\bar{alpha}_t, DDIM's alpha_t)
"""
from __future__ import annotations

import torch

from genctl.schedule import SCHEDULES, alphas_cumprod, betas_for, dpm_solver_2m_coefficients, step_coefficients, timesteps  # noqa: F401  (for families)
from genctl.spec import TensorSpec

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
    return ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, clip)[0]


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor,
              eta: torch.Tensor, noise: torch.Tensor, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``ddim_update`` that also returns the (clipped) data prediction x_0 it used: (x_prev, x0)."""
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
    return ab_prev.sqrt() * x0 + direction + sigma * noise, x0


def solver_update(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor,
                  eta: torch.Tensor, noise: torch.Tensor, x0_prev: torch.Tensor | None = None,
                  x0_delta_coef: torch.Tensor | None = None, clip: bool = True):
    """The step graphs' update: DDIM(eta) / DDPM, or DPM-Solver++(2M) — one graph for all three.

    DPM-Solver++'s first-order (data prediction) update is deterministic DDIM, so its second-order
    multistep update (Lu et al. 2022, Algorithm 2) is DDIM(eta = 0) plus a correction from the
    previous step's data prediction (``genctl.schedule.dpm_solver_2m_coefficients``):

        x_prev = DDIM(x_t, eps) + x0_delta_coef (x0 - x0_prev)

    ``x0_delta_coef`` (B,) is 0 on DDIM / DDPM rows and on DPM-Solver's first-order steps, which
    leaves DDIM's result as it was. ``x0_prev`` is loop state: the previous call's ``x0`` output.
    Returns (x_prev, x0); called without ``x0_prev`` (a step graph exported before DPM-Solver++,
    whose spec lacks these inputs) it returns x_prev alone, exactly the old DDIM step.
    """
    x_prev, x0 = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, clip)
    if x0_prev is None:
        return x_prev
    coef = x0_delta_coef.reshape(-1, *([1] * (x_t.dim() - 1)))
    return x_prev + coef * (x0 - x0_prev), x0


# ------------------------------------------------------------------- the step graph's solver I/O

FEEDS_BACK = {"x_prev": "x_t", "x0_out": "x0_prev"}  # the step graph's loop state: x_t and the last data prediction


def solver_specs(image: list) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The step graph's solver inputs (after ``noise``) and its outputs, for ``image`` = ["batch", *shape]:
    ``x0_prev`` (loop state, the previous step's ``x0_out``; zeros on the first step) and
    ``x0_delta_coef`` (per row, 0 = first order / DDIM); outputs ``x_prev`` and ``x0_out``."""
    return ([TensorSpec("x0_prev", "float32", image, "state"), TensorSpec("x0_delta_coef", "float32", ["batch"], "control")],
            [TensorSpec("x_prev", "float32", image, "output"), TensorSpec("x0_out", "float32", image, "output")])


def solver_examples(shape: list) -> dict[str, torch.Tensor]:
    """Example values of the solver inputs for export; parity draws between their min and max."""
    return {"x0_prev": torch.randn(2, *shape).clamp(-1, 1), "x0_delta_coef": torch.tensor([0.0, 1.5])}
