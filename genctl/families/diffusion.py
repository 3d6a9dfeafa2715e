"""diffusion — class-conditional DDPM (epsilon prediction) with classifier-free guidance.

A small UNet (residual blocks, GroupNorm, sinusoidal time embedding, a class embedding with one
extra *null* class) is trained with the DDPM simple loss (Ho et al. 2020, eq. 14); ``cfg_dropout``
of the labels are replaced by the null class so the same network predicts eps(x_t | y) and
eps(x_t | null) (Ho & Salimans 2022). Training keeps an EMA of the weights and saves it.

Exports two graphs:
- ``step(x_t, t, alpha_bar_t, alpha_bar_prev, label, guidance_scale, eta, noise, x0_prev, x0_delta_coef)
  -> (x_prev, x0_out)``: one fused denoising step — the UNet on the doubled batch (label + null
  label), the guidance combination and the DDIM/DDPM or DPM-Solver++(2M) update
  (``schedule.solver_update``; x0_out is fed back as x0_prev). One engine call per step.
- ``denoiser(x_t, t, label) -> eps``: the plain network, for users who bring their own scheduler
  (``label`` may be the null class index = number of classes).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genctl import progress
from genctl.families import schedule
from genctl.families.base import Family, GraphDef
from genctl.families.loop import batches
from genctl.spec import GraphSpec, TensorSpec


@dataclass(kw_only=True)
class DiffusionConfig:
    width: int = 32  # channels of the first UNet level
    channel_mult: tuple[int, ...] = (1, 2)  # per level; H/patch and W/patch must divide by 2**(levels-1)
    groups: int = 8  # GroupNorm groups (must divide every level's channels)
    patch: int = 0  # p>1: UNet on (C*p*p, H/p, W/p) via pixel (un)shuffle, p*p x cheaper; 0 = auto (2 if H >= 16)
    timesteps: int = 1000  # T: training timesteps of the noise schedule
    schedule: str = "linear"  # "linear" (DDPM) or "cosine" (improved DDPM)
    cfg_dropout: float = 0.1  # share of labels replaced by the null class (0 = no guidance possible)
    lr: float = 1e-3
    batch_size: int = 64
    ema_decay: float = 0.999  # 0 disables EMA; warm-up min(decay, (1+n)/(10+n)) in early steps
    default_steps: int = 50  # sampling defaults written into the manifest
    default_guidance: float = 3.0


# ------------------------------------------------------------------------------------- network

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps -> (B, dim) (Transformer / DDPM positional encoding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.sin(), args.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding added in between; 1x1 skip if channels change."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps_theta(x_t, t, y): one ResBlock per level down and up, two in the middle."""

    def __init__(self, shape: list[int], n_classes: int, hp: DiffusionConfig):
        super().__init__()
        channels = shape[0]
        w, g, emb_dim = hp.width, hp.groups, 4 * hp.width
        chans = [w * m for m in hp.channel_mult]
        self.time_mlp = nn.Sequential(nn.Linear(w, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(n_classes + 1, emb_dim)  # index n_classes = the null class
        self.patch = hp.patch or (2 if shape[1] >= 16 else 1)
        channels *= self.patch ** 2
        self.stem = nn.Conv2d(channels, w, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = w
        for i, c_out in enumerate(chans):
            self.down.append(ResBlock(c, c_out, emb_dim, g))
            self.downsample.append(nn.Conv2d(c_out, c_out, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
            c = c_out
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, g), ResBlock(c, c, emb_dim, g)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c_skip in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(c + c_skip, c_skip, emb_dim, g))
            self.upsample.append(nn.Conv2d(c_skip, c_skip, 3, padding=1) if i > 0 else nn.Identity())
            c = c_skip
        self.head = nn.Sequential(nn.GroupNorm(g, c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # start as eps = 0: a stable first step
        nn.init.zeros_(self.head[-1].bias)
        self.width = w

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.width)) + self.label_embed(label)  # (B, E)
        return self.trunk(x, emb)

    def block_channels(self) -> list[int]:
        """Output channels of every ResBlock in the order ``trunk`` runs them (down, mid, up)."""
        return [b.conv2.out_channels for b in (*self.down, *self.mid, *self.up)]

    def trunk(self, x: torch.Tensor, emb: torch.Tensor, attend=None) -> torch.Tensor:
        """The UNet body on a (B, E) conditioning embedding; ``attend(h, i)`` (text models:
        cross-attention) runs after the i-th ResBlock, counting as ``block_channels`` does."""
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)  # (B, C*p*p, H/p, W/p)
        h, skips, i = self.stem(x), [], 0
        for block, down in zip(self.down, self.downsample):
            h, i = self._block(block, h, emb, attend, i)
            skips.append(h)
            h = down(h)  # (B, C, H/2, W/2) except after the last level
        for block in self.mid:
            h, i = self._block(block, h, emb, attend, i)
        for block, up in zip(self.up, self.upsample):
            h, i = self._block(block, torch.cat([h, skips.pop()], dim=1), emb, attend, i)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        eps = self.head(h)
        return F.pixel_shuffle(eps, self.patch) if self.patch > 1 else eps  # (B, C, H, W) predicted eps

    @staticmethod
    def _block(block, h, emb, attend, i):
        h = block(h, emb)
        return (attend(h, i) if attend is not None else h), i + 1


class DiffusionModel(nn.Module):
    """The UNet plus the training objective; the schedule is a non-persistent buffer."""

    def __init__(self, shape: list[int], n_classes: int, hp: DiffusionConfig):
        super().__init__()
        self.unet = UNet(shape, n_classes, hp)
        self.n_classes, self.cfg_dropout = n_classes, hp.cfg_dropout
        betas = schedule.betas_for(hp.schedule, hp.timesteps)
        ab = torch.tensor(schedule.alphas_cumprod(betas), dtype=torch.float32)
        self.register_buffer("alpha_bar", ab, persistent=False)

    def loss(self, x0: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """DDPM simple loss (eq. 14) with classifier-free label dropout."""
        t = torch.randint(0, len(self.alpha_bar), (x0.shape[0],))
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, self.alpha_bar[t], noise)
        drop = torch.rand(label.shape) < self.cfg_dropout
        label = torch.where(drop, torch.full_like(label, self.n_classes), label)
        return F.mse_loss(self.unet(x_t, t, label), noise)


class StepGraph(nn.Module):
    """The fused step: UNet on [cond; null] -> guidance -> DDIM / DPM-Solver++ update (see module docstring).

    Called without ``x0_prev`` / ``x0_delta_coef`` (the torch reference of a bundle exported before
    DPM-Solver++) it is the old DDIM step and returns x_prev alone."""

    def __init__(self, unet: UNet, null_label: int):
        super().__init__()
        self.unet, self.null_label = unet, null_label

    def forward(self, x_t, t, alpha_bar_t, alpha_bar_prev, label, guidance_scale, eta, noise, x0_prev=None, x0_delta_coef=None):
        b = x_t.shape[0]
        labels = torch.cat([label, torch.full_like(label, self.null_label)])  # (2B,)
        eps = self.unet(torch.cat([x_t, x_t]), torch.cat([t, t]), labels)  # (2B, C, H, W)
        eps = schedule.guided_eps(eps[:b], eps[b:], guidance_scale)
        return schedule.solver_update(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, x0_prev, x0_delta_coef)


# -------------------------------------------------------------------------------------- training

def train_loop(model: DiffusionModel, x: np.ndarray, y: np.ndarray, hp: DiffusionConfig, epochs: int, seed: int) -> dict:
    """Adam on the simple loss with an EMA of the weights; the EMA weights are kept at the end."""
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    ema = copy.deepcopy(model).eval() if hp.ema_decay > 0 else None
    rng, n_steps = np.random.default_rng(seed), 0
    start, epoch_loss = time.perf_counter(), float("nan")
    model.train()
    with progress.bar("train diffusion", epochs * -(-len(x) // hp.batch_size)) as advance:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for xb, yb in batches([x, y], hp.batch_size, rng):
                loss = model.loss(xb, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_steps += 1
                if ema is not None:
                    _ema_update(ema, model, min(hp.ema_decay, (1 + n_steps) / (10 + n_steps)))
                total, count = total + loss.item() * len(xb), count + len(xb)
                advance(epoch=epoch + 1, loss=total / count)
            epoch_loss = total / count
    if ema is not None:
        model.load_state_dict(ema.state_dict())
    model.eval()
    return {"loss": epoch_loss, "steps": n_steps, "seconds": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_mul_(e, decay)
    torch._foreach_add_(e, m, alpha=1 - decay)


# ---------------------------------------------------------------------------------------- family

class Diffusion(Family):
    name = "diffusion"
    sampler = "diffusion"
    Config = DiffusionConfig
    default_epochs = {"digits": 60, "mnist": 40}  # 40: 98.8% control accuracy at guidance 3 (20: 93.8%)

    def build_model(self, config: dict) -> DiffusionModel:
        ds = config["dataset"]
        return DiffusionModel(ds["shape"], len(ds["label_names"]), _hp(config))

    def train(self, model: DiffusionModel, dataset, config: dict, epochs: int) -> dict:
        return train_loop(model, dataset.x_train, dataset.y_train, _hp(config), epochs, config["train"]["seed"])

    def graphs(self, model: DiffusionModel, config: dict) -> dict[str, GraphDef]:
        shape, hp = config["dataset"]["shape"], _hp(config)
        n_classes = len(config["dataset"]["label_names"])
        image = ["batch", *shape]
        per_sample = lambda name, role="control": TensorSpec(name, "float32", ["batch"], role)  # noqa: E731
        x_t = TensorSpec("x_t", "float32", image, "state")
        t = TensorSpec("t", "int64", ["batch"], "control", high=hp.timesteps)
        label = TensorSpec("label", "int64", ["batch"], "condition", high=n_classes + 1)
        solver_in, solver_out = schedule.solver_specs(image)
        step = GraphSpec("step", inputs=[x_t, t, per_sample("alpha_bar_t"), per_sample("alpha_bar_prev"), label,
                                         per_sample("guidance_scale"), per_sample("eta"),
                                         TensorSpec("noise", "float32", image, "noise"), *solver_in],
                         outputs=solver_out, feeds_back=dict(schedule.FEEDS_BACK),
                         doc="one CFG denoising step: UNet on [label; null], eps_u + w (eps_c - eps_u), "
                             "DDIM(eta) update + x0_delta_coef (x0 - x0_prev) (DPM-Solver++(2M))")
        denoiser = GraphSpec("denoiser", inputs=[x_t, t, label], outputs=[TensorSpec("eps", "float32", image, "output")],
                             doc=f"eps_theta(x_t, t, label); label {n_classes} is the null (unconditional) class")
        # Example values span the valid ranges: parity draws random feeds between their min and max.
        ex = {"x_t": torch.randn(2, *shape), "t": torch.tensor([3, hp.timesteps - 1]),
              "label": torch.tensor([1, n_classes]), "noise": torch.randn(2, *shape)}
        step_ex = dict(ex, alpha_bar_t=torch.tensor([0.05, 0.95]), alpha_bar_prev=torch.tensor([0.5, 1.0]),
                       guidance_scale=torch.tensor([0.0, 5.0]), eta=torch.tensor([0.0, 1.0]), **schedule.solver_examples(shape))
        return {"step": GraphDef(StepGraph(model.unet, n_classes), step_ex, step),
                "denoiser": GraphDef(model.unet, {k: ex[k] for k in ("x_t", "t", "label")}, denoiser)}

    def sampler_section(self, config: dict) -> dict:
        hp = _hp(config)
        guidance = hp.default_guidance if hp.cfg_dropout > 0 else 1.0  # no null class trained: plain conditional
        return {"kind": "diffusion", "graph": "step", "denoiser": "denoiser",
                "null_label": len(config["dataset"]["label_names"]), "cfg_dropout": hp.cfg_dropout,
                "loop_tolerance_factor": 1,  # measured: DDIM-50 w=3 loop max error 1.3e-5 (mnist), 2.8e-6 (digits)
                "defaults": {"steps": hp.default_steps, "guidance_scale": guidance, "eta": 0.0, "sampler": "ddim"}}

    def info(self, config: dict) -> dict:
        hp = _hp(config)
        betas = schedule.betas_for(hp.schedule, hp.timesteps)
        return {**super().info(config), "prediction": "epsilon", "cfg_dropout": hp.cfg_dropout,
                "schedule": {"kind": hp.schedule, "timesteps": hp.timesteps, "betas": [float(b) for b in betas]}}


def _hp(config: dict, cls: type = DiffusionConfig) -> DiffusionConfig:
    """The config dataclass (``cls``: a DiffusionConfig subclass) from a checkpoint's JSON hparams."""
    hp = dict(config["hparams"])
    hp["channel_mult"] = tuple(hp.get("channel_mult", cls.channel_mult))  # JSON gives a list
    return cls(**hp)
