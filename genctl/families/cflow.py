"""cflow — a class-conditional Glow/RealNVP-style normalizing flow with an exact likelihood.

Pipeline (forward = image → latent, the density direction):

1. **dequantize** (training only): discrete pixel ``v`` in {0..L-1} becomes ``x = 2 (v + u) / L - 1``
   with ``u ~ U[0, 1)``, so the flow models a continuous density on [-1, 1]^D;
2. **logit preprocessing**: ``p = alpha + (1 - 2 alpha) (x + 1) / 2``, ``z0 = log p - log(1 - p)``
   maps (-1, 1) onto the real line (``alpha`` keeps it finite at the edges); its log-Jacobian is
   part of ``log_prob``, so the likelihood is that of the [-1, 1] image. A small ``alpha`` (1e-3)
   stretches the many pixels at 0 and 255 over a wide logit range, so the flow does not have to
   contract their dequantization noise 100-fold — which would make the inverse (``sample``)
   amplify fp32 rounding past the 1e-4 parity tolerance (seen with RealNVP's 0.05);
3. per scale: **squeeze** (B, C, H, W) → (B, 4C, H/2, W/2), then ``steps`` flow steps of
   ActNorm → fixed channel permutation → affine coupling; a coupling's net (conv 3x3 → 1x1 →
   zero-init 3x3) sees half of the channels plus the label embedding as constant planes, and
   outputs shift and scale (``s = sigmoid(raw + 2)``, Glow) for the other half;
4. **class-conditional Gaussian prior** ``N(mu_y, sigma_y^2)`` on the latent (learned per class).

Graphs:
- ``sample(noise, label) -> sample``: ``noise`` ~ N(0, I) shaped like the image (it is squeezed
  the same way as an image), scaled by the prior of ``label``, run through the inverse flow and
  the inverse logit → image in [-1, 1]. The temperature scales ``noise``.
- ``log_prob(image, label) -> log_prob``: ``log p(image | label)`` in **nats per image**, the
  density of the continuous [-1, 1]-scaled image (no discrete-bin volume term; see
  ``genctl.eval.likelihood.bits_per_dim`` for the conversion to bits/dim on the pixel scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genctl.data.images import LEVELS
from genctl.errors import GenctlError
from genctl.families.base import Family, GraphDef
from genctl.families.loop import fit
from genctl.spec import GraphSpec, TensorSpec


@dataclass(kw_only=True)
class CFlowConfig:
    scales: int = 2  # squeeze levels; H and W must be divisible by 2**scales
    steps: int = 4  # flow steps (actnorm, permutation, coupling) per scale
    hidden: int = 64  # channels of each coupling net
    label_dim: int = 8  # label-embedding planes fed to each coupling net
    alpha: float = 1e-3  # logit margin; small keeps the inverse well conditioned (module docstring, 2.)
    lr: float = 1e-3
    batch_size: int = 32  # more updates per epoch on a CPU budget


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block becomes 4 channels."""
    _, c, h, w = x.shape
    x = x.reshape(-1, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(-1, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H/2, W/2) -> (B, C, H, W): the inverse of ``squeeze``."""
    _, c4, h, w = x.shape
    x = x.reshape(-1, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(-1, c4 // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + b) e^{logs}``, initialised from the first batch (Glow)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        self.bias.copy_(-x.mean(dim=(0, 2, 3), keepdim=True))
        self.logs.copy_(-torch.log(x.std(dim=(0, 2, 3), keepdim=True) + 1e-6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x + self.bias) * torch.exp(self.logs), self.logs.sum() * x.shape[2] * x.shape[3]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


class Permute(nn.Module):
    """A fixed random channel permutation (log-det 0); inverse by the inverse permutation."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        perm = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.perm)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(1, self.inv)


class Coupling(nn.Module):
    """Affine coupling: ``y_b = (x_b + t(x_a, y)) * s(x_a, y)``, ``y_a = x_a``."""

    def __init__(self, channels: int, n_classes: int, hp: CFlowConfig):
        super().__init__()
        self.half = channels // 2
        self.embed = nn.Embedding(n_classes, hp.label_dim)
        self.net = nn.Sequential(
            nn.Conv2d(self.half + hp.label_dim, hp.hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hp.hidden, hp.hidden, 1), nn.ReLU(),
            nn.Conv2d(hp.hidden, 2 * (channels - self.half), 3, 1, 1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start near the identity (Glow's zero-init last layer)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_scale(self, xa: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(label)[:, :, None, None].expand(-1, -1, xa.shape[2], xa.shape[3])  # (B, E, h, w)
        shift, raw = self.net(torch.cat([xa, e], dim=1)).chunk(2, dim=1)
        return shift, torch.sigmoid(raw + 2.0)  # scale in (0, 1), ~0.88 at init

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, :self.half], x[:, self.half:]
        shift, scale = self._shift_scale(xa, label)
        return torch.cat([xa, (xb + shift) * scale], dim=1), torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, :self.half], y[:, self.half:]
        shift, scale = self._shift_scale(ya, label)
        return torch.cat([ya, yb / scale - shift], dim=1)


class FlowStep(nn.Module):
    def __init__(self, channels: int, n_classes: int, hp: CFlowConfig, seed: int):
        super().__init__()
        self.actnorm, self.permute = ActNorm(channels), Permute(channels, seed)
        self.coupling = Coupling(channels, n_classes, hp)

    def forward(self, x: torch.Tensor, label: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if init:  # data-dependent ActNorm init; a python flag, never traced into a graph
            self.actnorm.initialize(x)
        x, ld_act = self.actnorm(x)
        x, ld_coupling = self.coupling(self.permute(x), label)
        return x, ld_act + ld_coupling

    def inverse(self, y: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.actnorm.inverse(self.permute.inverse(self.coupling.inverse(y, label)))


class CFlowModel(nn.Module):
    def __init__(self, shape: list[int], n_classes: int, hp: CFlowConfig):
        super().__init__()
        c, h, w = shape
        self.alpha, self.dims = hp.alpha, c * h * w
        self.scales = nn.ModuleList()
        for s in range(hp.scales):
            channels = c * 4 ** (s + 1)
            self.scales.append(nn.ModuleList(FlowStep(channels, n_classes, hp, seed=100 * s + k) for k in range(hp.steps)))
        self.prior = nn.Embedding(n_classes, 2 * self.dims)  # per-class mean and log-std of the latent
        nn.init.zeros_(self.prior.weight)

    # --- [-1, 1] image <-> logit space ---------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * (x + 1) / 2
        z0 = torch.log(p) - torch.log1p(-p)
        logdet = (math.log((1 - 2 * self.alpha) / 2) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return z0, logdet  # (B, C, H, W), (B,)

    def postprocess(self, z0: torch.Tensor) -> torch.Tensor:
        u = (torch.sigmoid(z0) - self.alpha) / (1 - 2 * self.alpha)
        return torch.clamp(2 * u - 1, -1.0, 1.0)

    # --- flow ------------------------------------------------------------------------------------
    def _prior(self, label: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logs = self.prior(label).chunk(2, dim=1)  # (B, D) each
        return mu.reshape(like.shape), logs.reshape(like.shape)

    def encode(self, x: torch.Tensor, label: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """[-1, 1] image -> latent (squeezed shape) and log|det J| (B,)."""
        z, logdet = self.preprocess(x)
        for steps in self.scales:
            z = squeeze(z)
            for step in steps:
                z, ld = step(z, label, init)
                logdet = logdet + ld
        return z, logdet

    def log_prob(self, image: torch.Tensor, label: torch.Tensor, init: bool = False) -> torch.Tensor:
        """log p(image | label) in nats per image, density on the continuous [-1, 1] scale."""
        z, logdet = self.encode(image, label, init)
        mu, logs = self._prior(label, z)
        log_normal = -0.5 * ((z - mu) * torch.exp(-logs)) ** 2 - logs - 0.5 * math.log(2 * math.pi)
        return log_normal.flatten(1).sum(1) + logdet  # (B,)

    def sample(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """noise (B, C, H, W) ~ N(0, I) -> image (B, C, H, W) in [-1, 1]."""
        z = noise
        for _ in self.scales:
            z = squeeze(z)
        mu, logs = self._prior(label, z)
        z = mu + torch.exp(logs) * z
        for steps in reversed(self.scales):
            for step in reversed(steps):
                z = step.inverse(z, label)
            z = unsqueeze(z)
        return self.postprocess(z)


class SampleGraph(nn.Module):
    def __init__(self, model: CFlowModel):
        super().__init__()
        self.model = model

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.model.sample(noise, label)


class LogProbGraph(nn.Module):
    def __init__(self, model: CFlowModel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(image, label)


def dequantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """[-1, 1] image at ``levels`` discrete values -> uniformly dequantized continuous image."""
    v = torch.round((x + 1) / 2 * (levels - 1))
    return 2 * (v + torch.rand_like(x)) / levels - 1


def bits_per_dim(model: CFlowModel, x: np.ndarray, y: np.ndarray, levels: int, batch: int = 256) -> float:
    """Test bits/dim in torch (same convention as ``genctl.eval.likelihood.bits_per_dim``)."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = dequantize(torch.from_numpy(x[i:i + batch]), levels)
            total += (-model.log_prob(xb, torch.from_numpy(y[i:i + batch]))).sum().item()
    nll = total / len(x) + model.dims * math.log(levels / 2)
    return nll / (model.dims * math.log(2))


def levels_of(config: dict) -> int:
    return LEVELS.get(config["dataset"]["name"], 256)


class CFlow(Family):
    name = "cflow"
    sampler = "oneshot"
    Config = CFlowConfig
    default_epochs = {"digits": 30, "mnist": 12}

    def build_model(self, config: dict) -> CFlowModel:
        ds, hp = config["dataset"], CFlowConfig(**config["hparams"])
        c, h, w = ds["shape"]
        if h % 2 ** hp.scales or w % 2 ** hp.scales:
            raise GenctlError(f"cflow scales={hp.scales} for image shape {ds['shape']}", got=f"H, W = {h}, {w}",
                              expected=f"H and W divisible by {2 ** hp.scales}", fix="lower --hparam scales")
        return CFlowModel(ds["shape"], len(ds["label_names"]), hp)

    def train(self, model: CFlowModel, dataset, config: dict, epochs: int) -> dict:
        hp, levels = CFlowConfig(**config["hparams"]), levels_of(config)
        x, y = dataset.x_train, dataset.y_train
        with torch.no_grad():  # ActNorm data init on a large batch
            idx = np.random.default_rng(config["train"]["seed"]).permutation(len(x))[:512]
            model.log_prob(dequantize(torch.from_numpy(x[idx]), levels), torch.from_numpy(y[idx]), init=True)

        def loss(m: CFlowModel, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return -m.log_prob(dequantize(xb, levels), yb).mean() / m.dims  # nats per dim

        metrics = fit(model, [x, y], loss, epochs=epochs, batch_size=hp.batch_size, lr=hp.lr,
                      seed=config["train"]["seed"], description="train cflow")
        metrics["test_bits_per_dim"] = round(bits_per_dim(model, dataset.x_test, dataset.y_test, levels), 4)
        return metrics

    def graphs(self, model: CFlowModel, config: dict) -> dict[str, GraphDef]:
        shape = config["dataset"]["shape"]
        label = TensorSpec("label", "int64", ["batch"], "condition", high=len(config["dataset"]["label_names"]))
        image_shape = ["batch", *shape]
        sample = GraphSpec("sample", inputs=[TensorSpec("noise", "float32", image_shape, "noise"), label],
                           outputs=[TensorSpec("sample", "float32", image_shape, "output")],
                           doc="noise ~ N(0, I) shaped like the image and a label -> image in [-1, 1] (inverse flow)")
        log_prob = GraphSpec("log_prob", inputs=[TensorSpec("image", "float32", image_shape, "data"), label],
                             outputs=[TensorSpec("log_prob", "float32", ["batch"], "output")],
                             doc="log p(image | label) in nats per image, density of the continuous [-1, 1] image")
        labels, images = torch.tensor([1, 3]) % len(config["dataset"]["label_names"]), torch.rand(2, *shape) * 2 - 1
        return {
            "sample": GraphDef(SampleGraph(model).eval(), {"noise": torch.randn(2, *shape), "label": labels}, sample),
            "log_prob": GraphDef(LogProbGraph(model).eval(), {"image": images, "label": labels}, log_prob),
        }

    def sampler_section(self, config: dict) -> dict:
        # a reduced temperature (Glow) trades diversity for cleaner, better-controlled digits
        return {"kind": "oneshot", "graph": "sample", "defaults": {"temperature": 0.7}}

    def info(self, config: dict) -> dict:
        out = super().info(config)
        out["output"]["levels"] = levels_of(config)  # discrete pixel levels, for bits/dim
        return out
