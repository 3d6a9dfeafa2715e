"""Diffusion sampling: x_T ~ N(0, I), then one fused ``step`` graph call per denoising step.

The loop is backend-agnostic and its state stays where the backend computes: x_t is a backend
value (numpy, or a device tensor under IO binding / TensorRT) fed back step after step and brought
to the host once at the end. The timestep sequence and each step's (alpha_bar_t, alpha_bar_prev)
(uploaded once, a row per step) come from the schedule in the manifest (``info.schedule.betas``) via
``genctl.schedule``; x_T and every per-step noise tensor come from the seeded ``rng``, so
the same seed gives the same samples on every backend.

``sampler=ddim`` uses the ``eta`` control (0 = deterministic); ``sampler=ddpm`` is DDIM with eta = 1
on the same timestep sequence, which is exactly DDPM ancestral sampling (Song et al. 2021, eq. 16
with eta = 1 gives DDPM's posterior variance); ``steps < T`` strides it ("respaced" DDPM).
``sampler=dpmpp-2m`` is DPM-Solver++(2M) (Lu et al. 2022; deterministic, eta unused): the same step
graph with a per-step ``x0_delta_coef`` (``genctl.schedule.dpm_solver_2m_coefficients``, uploaded
with the other per-step rows) and the previous step's data prediction as a second piece of loop
state (``x0_out`` fed back as ``x0_prev``, as ``x_prev`` is as ``x_t``). A step graph exported
before DPM-Solver++ lacks those inputs: it still runs ddim and ddpm, and refuses dpmpp-2m.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from genctl import schedule
from genctl.conditions import Control
from genctl.errors import BundleError, ConditionError
from genctl.runtime.backends.base import Backend
from genctl.runtime.samplers.base import Request, Sampler, Samples, condition_feeds, split

SAMPLERS = ("ddim", "ddpm", "dpmpp-2m")
SOLVER_INPUTS = ("x0_prev", "x0_delta_coef")  # the step graph's DPM-Solver++ inputs (absent before it)


class DiffusionSampler(Sampler):
    kind = "diffusion"
    label = "Diffusion"
    controls = [
        Control("steps", int, 50, low=1, help="denoising steps (1..T, the training timesteps)"),
        Control("guidance_scale", float, 3.0, low=0.0, high=1000.0,
                help="classifier-free guidance (0 = unconditional, 1 = conditional, >1 = guided)"),
        Control("eta", float, 0.0, low=0.0, high=1.0, help="DDIM noise (0 = deterministic, 1 = DDPM's variance)"),
        Control("sampler", str, "ddim", choices=SAMPLERS,
                help="ddim (uses eta), ddpm (eta = 1) or dpmpp-2m (DPM-Solver++(2M): deterministic, good in 10-25 steps)"),
    ]

    def __init__(self, bundle):
        super().__init__(bundle)
        name = self.section.get("graph", "step")
        if name not in bundle.graphs:
            raise BundleError(f"Sampler graph '{name}' of bundle '{bundle.path}'", got=f"graphs {sorted(bundle.graphs)}",
                              expected="the fused step graph the manifest names", fix="re-export the bundle")
        self.spec = bundle.graphs[name]
        self.has_solver = all(n in self.spec.input_names for n in SOLVER_INPUTS)
        self.alpha_bar = check_schedule(bundle, self.spec)
        self.train_timesteps = len(self.alpha_bar)

    def sample_batch(self, backend: Backend, requests: list[Request]) -> list[Samples]:
        steps, solver = self.batch_key(requests[0])  # one timestep sequence and one solver per batch
        ws = [r.controls["guidance_scale"] for r in requests]
        etas = [eta_of(r.controls) for r in requests]
        ts = schedule.timesteps(self.train_timesteps, steps)
        ab_t, ab_prev = schedule.step_coefficients(self.alpha_bar, ts)
        total = sum(r.total for r in requests)
        put = backend.put  # values stay where the backend computes (device-resident on GPU backends)
        x_spec = self.spec.input("x_t")
        image = x_spec.concrete({"batch": total})
        x = put(np.concatenate([self.noise(x_spec, r.total, r.rng) for r in requests]))  # x_T ~ N(0, I), per request
        per_row = lambda vs: np.concatenate([np.full(r.total, v, dtype=np.float32) for r, v in zip(requests, vs)])  # noqa: E731
        col = lambda v: np.repeat(np.asarray(v, dtype=np.float32)[:, None], total, axis=1)  # noqa: E731  (steps, B)
        fixed = {**{k: put(v) for k, v in condition_feeds(self.bundle.conditions, requests).items()},
                 "guidance_scale": put(per_row(ws)), "eta": put(per_row(etas))}  # graph inputs: one value per row
        per_step = {"t": put(np.repeat(np.asarray(ts, dtype=np.int64)[:, None], total, axis=1)),
                    "alpha_bar_t": put(col(ab_t)), "alpha_bar_prev": put(col(ab_prev))}  # one upload, a row per step
        state = {"x_t": x}  # loop state, fed back from the step's outputs (spec.feeds_back)
        if self.has_solver:  # DPM-Solver++(2M): x0_delta_coef = 0 keeps DDIM / DDPM (and first-order steps) as they were
            delta = schedule.dpm_solver_2m_coefficients(self.alpha_bar, ts)["x0_delta_coef"] if solver == "dpmpp-2m" else np.zeros(len(ts))
            per_step["x0_delta_coef"] = put(col(delta))
            state["x0_prev"] = put(np.zeros(image, dtype=np.float32))  # unused by the first (first-order) step
        zeros = None if any(e > 0 for e in etas) else put(np.zeros(image, dtype=np.float32))
        step_s = []
        for i in range(len(ts)):
            noise = zeros if zeros is not None else put(self._step_noise(x_spec, requests, etas))
            feeds = {**state, "noise": noise, **fixed, **{k: v[i] for k, v in per_step.items()}}
            start = time.perf_counter()
            out = backend.run_values(self.spec.name, feeds)
            step_s.append(time.perf_counter() - start)
            state = {name: out[o] for o, name in self.spec.feeds_back.items()}
        x = backend.get(state["x_t"])
        return [Samples(data=x[s], rows=r.rows.labels, n=r.n, kind="image",
                        meta={"steps": steps, "guidance_scale": w, "eta": eta, "sampler": r.controls["sampler"],
                              "step_s": step_s})
                for r, s, w, eta in zip(requests, split(requests), ws, etas)]

    def _step_noise(self, x_spec, requests: list[Request], etas: list[float]) -> np.ndarray:
        """This step's noise: drawn from each request's rng when its eta > 0 (as alone), else zeros."""
        return np.concatenate([self.noise(x_spec, r.total, r.rng) if eta > 0
                               else np.zeros(x_spec.concrete({"batch": r.total}), dtype=np.float32)
                               for r, eta in zip(requests, etas)])

    def check(self, controls: dict[str, Any], inputs: dict[str, Any]) -> None:
        steps, w = controls["steps"], controls["guidance_scale"]
        if controls["sampler"] == "dpmpp-2m" and not self.has_solver:
            path = self.bundle.path
            raise ConditionError("Control --sampler", got="'dpmpp-2m'",
                                 expected=f"ddim or ddpm for this bundle: its step graph was exported before DPM-Solver++ "
                                          f"(no {' / '.join(SOLVER_INPUTS)} inputs)",
                                 fix=f"re-export it from its checkpoint, the bundle's source/: genctl export {path}/source --out NEW_BUNDLE")
        if steps > self.train_timesteps:
            raise ConditionError("Control --steps", got=steps,
                                 expected=f"a value in [1, {self.train_timesteps}] (the model's training timesteps)")
        if w != 1.0 and not self.section.get("unconditional", (self.section.get("cfg_dropout") or 0) > 0):
            raise ConditionError("Control --guidance-scale", got=w,
                                 expected="1 for this model: it was trained without null-class dropout (cfg_dropout=0), "
                                          "so it has no unconditional prediction", fix="retrain with cfg_dropout > 0")

    def batch_key(self, request: Request):
        """(steps, solver): guidance scale and eta are per-row graph inputs; steps and the solver set the loop
        (ddim and ddpm are one solver, DDIM with a per-row eta)."""
        return request.controls["steps"], ("dpmpp-2m" if request.controls["sampler"] == "dpmpp-2m" else "ddim")


def eta_of(controls: dict[str, Any]) -> float:
    """DDPM is DDIM with eta = 1 on the same timesteps; DPM-Solver++(2M) is deterministic (eta applies to ddim only)."""
    return {"ddpm": 1.0, "dpmpp-2m": 0.0}.get(controls["sampler"], controls["eta"])


def check_schedule(bundle, spec) -> np.ndarray:
    """alpha_bar from the manifest's schedule, after checking it fits the step graph; BundleError if not."""
    sched = bundle.info.get("schedule") or {}
    betas = np.asarray(sched.get("betas", []), dtype=np.float64)
    where = f"Schedule of bundle '{bundle.path}'"
    if betas.ndim != 1 or len(betas) == 0 or not np.all((betas > 0) & (betas < 1)):
        raise BundleError(where, got=f"{betas.size} betas", expected="info.schedule.betas: T values in (0, 1)",
                          fix="re-export the bundle")
    declared = {"info.schedule.timesteps": sched.get("timesteps"), "step graph input 't' high": spec.input("t").high}
    for what, value in declared.items():
        if value != len(betas):
            raise BundleError(where, got=f"{len(betas)} betas but {what} = {value}",
                              expected="one schedule length T everywhere (the step graph was built for another schedule)",
                              fix="re-export the bundle from its checkpoint")
    kind = sched.get("kind")
    if kind in schedule.SCHEDULES and not np.allclose(betas, schedule.betas_for(kind, len(betas)), rtol=1e-6, atol=0):
        raise BundleError(where, got=f"betas that differ from the '{kind}' schedule with T={len(betas)}",
                          expected="the schedule the model was trained with", fix="re-export the bundle")
    return schedule.alphas_cumprod(betas)


def guidance_sweep(generator, scales: Sequence[float], n_per_class: int, seed: int,
                   classify: Callable[[np.ndarray], np.ndarray], **controls: Any) -> dict[float, float]:
    """Control accuracy per guidance scale: generate ``n_per_class`` samples of every class at each
    scale (same seed), ``classify(images) -> labels`` them, and return ``{scale: accuracy}``."""
    cond = generator.bundle.conditions.conditions[0]
    wanted = np.repeat(np.arange(len(cond.names)), n_per_class)  # rows in class order, n each
    out = {}
    for scale in scales:
        samples = generator.generate(None, n=n_per_class, seed=seed, guidance_scale=float(scale), **controls)
        out[float(scale)] = float(np.mean(np.asarray(classify(samples.data)) == wanted))
    return out
