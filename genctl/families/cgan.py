"""cgan — class-conditional DCGAN: projection discriminator, hinge loss, auxiliary classifier.

- Generator ``G(noise, label) -> sample``: the label embedding is concatenated to the latent,
  a linear layer makes a (2W, H/4, W/4) map, two transposed convs upsample x4, tanh → [-1, 1].
  PixelNorm instead of BatchNorm, so the exported (eval-mode) generator equals the trained one.
- Discriminator ``D(image, label) -> (score, class_logits)``: spectral-norm convs, a minibatch-std
  channel (ProGAN, against mode collapse) and a projection head
  ``score = w·φ(x) + <embed(y), φ(x)>`` (Miyato & Koyama 2018), plus an auxiliary classifier on
  ``φ(x)`` (AC-GAN, Odena et al. 2017) that sharpens label control on small datasets.
  Trained with the hinge loss and Adam(2e-4, betas (0.5, 0.999)).

Only the generator is exported, as graph ``sample(noise, label) -> sample``; the discriminator is
a training tool and stays in the checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genctl import progress
from genctl.families.base import Family, GraphDef
from genctl.families.loop import batches
from genctl.spec import GraphSpec, TensorSpec


@dataclass(kw_only=True)
class CGANConfig:
    latent_dim: int = 64  # size of the noise vector z
    width: int = 32  # channels of the generator's last hidden map and the discriminator's first conv
    label_dim: int = 32  # generator label embedding size
    lr: float = 2e-4  # Adam learning rate, generator and discriminator (DCGAN)
    beta1: float = 0.5  # Adam betas: (0.5, 0.999) is the DCGAN recipe
    beta2: float = 0.999
    d_steps: int = 1  # discriminator updates per generator update
    ac_weight: float = 1.0  # auxiliary-classifier loss weight (AC-GAN, Odena et al. 2017); 0 = projection only
    ms_weight: float = 1.0  # mode-seeking term weight (MSGAN); 0 = off
    batch_size: int = 32  # small batches: more updates per epoch on a CPU budget


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (ProGAN). Unlike BatchNorm it has no
    train/eval difference, so the exported generator samples exactly like the trained one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # clamp, not ``+ 1e-8``: the dynamo exporter's optimizer drops a tiny added constant, and a
        # pixel whose ReLU outputs are all zero then gives 0 * inf = NaN in ONNX Runtime
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True).clamp(min=1e-8))


class CGANGenerator(nn.Module):
    """``(noise (B, Z), label (B,)) -> image (B, C, H, W)`` in [-1, 1]."""

    def __init__(self, shape: list[int], n_classes: int, hp: CGANConfig):
        super().__init__()
        c, h, w = shape
        self.base = (2 * hp.width, h // 4, w // 4)
        self.embed = nn.Embedding(n_classes, hp.label_dim)
        self.fc = nn.Linear(hp.latent_dim + hp.label_dim, int(np.prod(self.base)))
        self.up = nn.Sequential(
            nn.ReLU(), PixelNorm(),
            nn.ConvTranspose2d(2 * hp.width, hp.width, 4, 2, 1), nn.ReLU(), PixelNorm(),  # (B, W, H/2, W/2)
            nn.ConvTranspose2d(hp.width, c, 4, 2, 1), nn.Tanh(),  # (B, C, H, W)
        )

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(torch.cat([noise, self.embed(label)], dim=1)).view(-1, *self.base)  # (B, 2W, H/4, W/4)
        return self.up(hidden)


def minibatch_std(x: torch.Tensor) -> torch.Tensor:
    """Append the mean across-batch std as one channel (ProGAN): D sees a collapsed batch."""
    std = x.std(dim=0, unbiased=False).mean().expand(x.shape[0], 1, x.shape[2], x.shape[3])
    return torch.cat([x, std], dim=1)


class CGANDiscriminator(nn.Module):
    """``(image, label) -> score (B,)``: spectral-norm convs, minibatch std, projection head."""

    def __init__(self, shape: list[int], n_classes: int, hp: CGANConfig):
        super().__init__()
        c, h, w = shape
        feat = 2 * hp.width
        self.down = nn.Sequential(
            spectral_norm(nn.Conv2d(c, hp.width, 4, 2, 1)), nn.LeakyReLU(0.2),  # (B, W, H/2, W/2)
            spectral_norm(nn.Conv2d(hp.width, feat, 4, 2, 1)), nn.LeakyReLU(0.2),  # (B, 2W, H/4, W/4)
        )
        self.top = nn.Sequential(spectral_norm(nn.Conv2d(feat + 1, feat, 3, 1, 1)), nn.LeakyReLU(0.2))
        self.head = spectral_norm(nn.Linear(feat, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, feat))
        self.classify = nn.Linear(feat, n_classes)  # auxiliary classifier (AC-GAN) for sharper control

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.top(minibatch_std(self.down(image))).sum(dim=(2, 3))  # (B, 2W) global sum pooling
        score = self.head(phi).squeeze(1) + (self.embed(label) * phi).sum(dim=1)  # (B,)
        return score, self.classify(phi)  # (B,), (B, classes)


class CGANModel(nn.Module):
    def __init__(self, shape: list[int], n_classes: int, hp: CGANConfig):
        super().__init__()
        self.generator = CGANGenerator(shape, n_classes, hp)
        self.discriminator = CGANDiscriminator(shape, n_classes, hp)
        self.latent_dim, self.n_classes, self.ac_weight, self.ms_weight = hp.latent_dim, n_classes, hp.ac_weight, hp.ms_weight

    def d_loss(self, real: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Hinge loss of D (real scores above +1, fake below -1) + its classifier's loss on real images."""
        with torch.no_grad():
            fake = self.generator(torch.randn(len(label), self.latent_dim), label)
        real_score, real_logits = self.discriminator(real, label)
        fake_score, _ = self.discriminator(fake, label)
        hinge = F.relu(1.0 - real_score).mean() + F.relu(1.0 + fake_score).mean()
        return hinge + self.ac_weight * F.cross_entropy(real_logits, label)

    def g_loss(self, batch_size: int) -> torch.Tensor:
        """Hinge loss of G on uniform fresh labels: raise D's score, be classified as the label, and
        keep two noises of one label apart (mode seeking, Mao et al. 2019: against one image per class)."""
        half = torch.randint(0, self.n_classes, (batch_size // 2,))
        label, noise = torch.cat([half, half]), torch.randn(2 * (batch_size // 2), self.latent_dim)
        fake = self.generator(noise, label)
        score, logits = self.discriminator(fake, label)
        f1, f2 = fake.chunk(2)
        z1, z2 = noise.chunk(2)
        ratio = (f1 - f2).abs().mean() / (z1 - z2).abs().mean()
        return -score.mean() + self.ac_weight * F.cross_entropy(logits, label) + self.ms_weight / (ratio + 1e-5)


def adam(module: nn.Module, hp: CGANConfig) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=hp.lr, betas=(hp.beta1, hp.beta2))


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train_gan(model: CGANModel, x: np.ndarray, y: np.ndarray, hp: CGANConfig, *, epochs: int, seed: int) -> dict:
    """Alternate ``d_steps`` discriminator updates and one generator update per mini-batch."""
    opt_g, opt_d = adam(model.generator, hp), adam(model.discriminator, hp)
    rng = np.random.default_rng(seed)
    per_epoch = (len(x) + hp.batch_size - 1) // hp.batch_size
    start, d_mean, g_mean = time.perf_counter(), float("nan"), float("nan")
    model.train()
    with progress.bar("train cgan", epochs * per_epoch) as advance:
        for epoch in range(epochs):
            d_total = g_total = 0.0
            for i, (real, label) in enumerate(batches([x, y], hp.batch_size, rng)):
                d_loss = step(opt_d, model.d_loss(real, label))
                if (i + 1) % hp.d_steps == 0:
                    g_total += step(opt_g, model.g_loss(hp.batch_size))
                d_total += d_loss
                advance(epoch=epoch + 1, d_loss=d_total / (i + 1), g_loss=g_total / max(1, (i + 1) // hp.d_steps))
            d_mean, g_mean = d_total / per_epoch, g_total / max(1, per_epoch // hp.d_steps)
    model.eval()
    return {"d_loss": round(d_mean, 4), "g_loss": round(g_mean, 4), "seconds": round(time.perf_counter() - start, 1)}


class CGAN(Family):
    name = "cgan"
    sampler = "oneshot"
    Config = CGANConfig
    default_epochs = {"digits": 40, "mnist": 25}

    def build_model(self, config: dict) -> CGANModel:
        ds = config["dataset"]
        return CGANModel(ds["shape"], len(ds["label_names"]), CGANConfig(**config["hparams"]))

    def train(self, model: CGANModel, dataset, config: dict, epochs: int) -> dict:
        hp = CGANConfig(**config["hparams"])
        return train_gan(model, dataset.x_train, dataset.y_train, hp, epochs=epochs, seed=config["train"]["seed"])

    def graphs(self, model: CGANModel, config: dict) -> dict[str, GraphDef]:
        shape, z = config["dataset"]["shape"], config["hparams"]["latent_dim"]
        n_classes = len(config["dataset"]["label_names"])
        spec = GraphSpec("sample", inputs=[TensorSpec("noise", "float32", ["batch", z], "noise"),
                                           TensorSpec("label", "int64", ["batch"], "condition", high=n_classes)],
                         outputs=[TensorSpec("sample", "float32", ["batch", *shape], "output")],
                         doc="noise z ~ N(0, I) and a label -> image in [-1, 1] (the cGAN generator)")
        example = {"noise": torch.randn(2, z), "label": torch.tensor([1, 3]) % n_classes}
        return {"sample": GraphDef(model.generator.eval(), example, spec)}

    def sampler_section(self, config: dict) -> dict:
        return {"kind": "oneshot", "graph": "sample", "defaults": {"temperature": 1.0}}
