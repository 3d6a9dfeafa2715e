"""Diffusion schedule math on the host (numpy), written once for training, export and sampling.

The noise schedule, the timestep sequence of a sampling run and each step's coefficients
``alpha_bar_t`` / ``alpha_bar_prev`` (DDIM, DDPM) and DPM-Solver++(2M)'s second-order coefficient.
The graph side (forward process, guidance, the DDIM / DPM-Solver++ update in torch) is
``genctl.families.schedule``; this half has no torch, so the diffusion sampler imports it without
loading any family.

Notation (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"; Lu et al. 2022, "DPM-Solver++"):
    beta_t            variance added at step t, t = 0..T-1 (the papers count 1..T)
    alpha_t           1 - beta_t
    alpha_bar_t       prod_{s <= t} alpha_s                 (DDPM's \\bar{alpha}_t, DDIM's alpha_t)
    a_t, s_t          sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)   (DPM-Solver's alpha_t, sigma_t)
    lambda_t          log(a_t / s_t), half the log-SNR; +inf at alpha_bar = 1 (the clean sample)
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


# ------------------------------------------------------------------------ DPM-Solver++(2M)

def lambdas(alpha_bar: np.ndarray) -> np.ndarray:
    """lambda = log(a / s) = (log alpha_bar - log(1 - alpha_bar)) / 2, float64; +inf where alpha_bar = 1."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(ab) - np.log1p(-ab))


def dpm_solver_2m_coefficients(alpha_bar: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
    """DPM-Solver++(2M) per step of the run ``ts`` (Lu et al. 2022, Algorithm 2; diffusers'
    ``DPMSolverMultistepScheduler``, algorithm_type="dpmsolver++", solver_order=2, lower_order_final).

    Step i goes from timestep s = ts[i] to the next one, t (after the last: alpha_bar = 1). With
    h = lambda_t - lambda_s, the data prediction x0 = D0 of this step and x0_prev of the step before,
    r = h_prev / h and A = a_t (1 - exp(-h)):

        first order   x_t = (s_t / s_s) x_s + A x0                        (== DDIM with eta = 0)
        second order  x_t = (s_t / s_s) x_s + A x0 + A / (2 r) (x0 - x0_prev)

    The first order update *is* the deterministic DDIM step (a_t - a_s s_t / s_s = A), so the step
    graph computes DDIM and adds ``x0_delta_coef`` (x0 - x0_prev) with ``x0_delta_coef`` = A / (2 r)
    on second-order steps and 0 on first-order ones:
    - the first step (no x0_prev yet);
    - the last step, from timestep 0 to alpha_bar = 1 (s_t = 0, h = inf, r = 0: the second-order
      term diverges; diffusers' final_sigmas_type="zero" makes the same choice);
    - lower_order_final: the step before it, onto timestep 0. Our runs end with a visit of t = 0
      (``timesteps``), so that step is the real final one: its h is several times the previous
      step's (linear T=1000, 20 steps: 2.9 vs 0.66 in lambda), and extrapolating x0 over it was
      measured worse than first order — on Gaussian data, where the exact ODE solution is known
      (linear T=1000, 64 samples), mean error at 20 / 40 / 80 steps 0.046 / 0.030 / 0.011 second
      order there, 0.036 / 0.011 / 0.0017 first order (DDIM: 0.044 / 0.023 / 0.012;
      tests/test_diffusion.py checks that DPM-Solver++ beats DDIM and converges faster).
    float64 arrays (steps,): ``lambda_s``, ``lambda_t``, ``h``, ``order`` (1 or 2), ``x_coef``
    (s_t / s_s), ``x0_coef`` (A), ``x0_delta_coef``.
    """
    ab_s = np.asarray(alpha_bar, dtype=np.float64)[ts]
    ab_t = np.concatenate([ab_s[1:], [1.0]])
    lam_s, lam_t = lambdas(ab_s), lambdas(ab_t)
    h = lam_t - lam_s  # > 0: the log-SNR grows towards the data; inf on the last step
    x_coef = np.sqrt(1 - ab_t) / np.sqrt(1 - ab_s)
    x0_coef = np.sqrt(ab_t) * -np.expm1(-h)
    order = np.full(len(ts), 2, dtype=np.int64)
    order[0] = 1
    order[-2:] = 1  # lower_order_final: onto timestep 0, and from it to the clean sample
    r = np.concatenate([[np.nan], h[:-1]]) / h
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(order == 2, x0_coef / (2 * r), 0.0)
    return {"lambda_s": lam_s, "lambda_t": lam_t, "h": h, "order": order, "x_coef": x_coef, "x0_coef": x0_coef,
            "x0_delta_coef": delta}
