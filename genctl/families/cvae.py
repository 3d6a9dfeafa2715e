"""cvae — conditional VAE with a conv encoder q(z | x, y) and a conv decoder p(x | z, y).

Exports two graphs:
- ``decode(noise, label) -> sample``: sampling; ``noise`` ~ N(0, I) is the latent z.
- ``encode(image, label) -> (mu, logvar)``: re-conditioning — encode a real image with its own
  label, decode its ``mu`` with another label (``genctl generate --from image.png``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genctl.families.base import Family, GraphDef
from genctl.families.loop import fit
from genctl.spec import GraphSpec, TensorSpec


@dataclass(kw_only=True)
class CVAEConfig:
    latent_dim: int = 16  # size of z
    width: int = 32  # channels of the first conv; the second has 2x
    label_dim: int = 16  # label embedding size
    beta: float = 1.0  # weight of the KL term
    lr: float = 2e-3
    batch_size: int = 64


class Encoder(nn.Module):
    def __init__(self, shape: list[int], n_classes: int, hp: CVAEConfig):
        super().__init__()
        c, h, w = shape
        self.embed = nn.Embedding(n_classes, hp.label_dim)
        self.conv = nn.Sequential(
            nn.Conv2d(c + 1, hp.width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, W, H/2, W/2)
            nn.Conv2d(hp.width, 2 * hp.width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, 2W, H/4, W/4)
            nn.Flatten(),
        )
        feat = 2 * hp.width * (h // 4) * (w // 4)
        self.head = nn.Linear(feat + hp.label_dim, 2 * hp.latent_dim)
        self.label_plane = nn.Linear(hp.label_dim, h * w)
        self.hw = (h, w)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(label)  # (B, E)
        plane = self.label_plane(e).view(-1, 1, *self.hw)  # the label as an extra input channel
        feat = self.conv(torch.cat([image, plane], dim=1))
        mu, logvar = self.head(torch.cat([feat, e], dim=1)).chunk(2, dim=1)  # (B, Z) each
        return mu, logvar


class Decoder(nn.Module):
    def __init__(self, shape: list[int], n_classes: int, hp: CVAEConfig):
        super().__init__()
        c, h, w = shape
        self.base = (2 * hp.width, h // 4, w // 4)
        self.embed = nn.Embedding(n_classes, hp.label_dim)
        self.fc = nn.Sequential(nn.Linear(hp.latent_dim + hp.label_dim, 256), nn.ReLU(),
                                nn.Linear(256, self.base[0] * self.base[1] * self.base[2]), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * hp.width, hp.width, 4, 2, 1), nn.ReLU(),  # (B, W, H/2, W/2)
            nn.ConvTranspose2d(hp.width, c, 4, 2, 1),  # (B, C, H, W) logits
        )

    def logits(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(torch.cat([noise, self.embed(label)], dim=1)).view(-1, *self.base)
        return self.deconv(hidden)

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(noise, label)) * 2.0 - 1.0  # pixels in [-1, 1]


class CVAEModel(nn.Module):
    def __init__(self, shape: list[int], n_classes: int, hp: CVAEConfig):
        super().__init__()
        self.encoder = Encoder(shape, n_classes, hp)
        self.decoder = Decoder(shape, n_classes, hp)
        self.beta = hp.beta

    def loss(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(image, label)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        target = (image + 1.0) / 2.0
        recon = F.binary_cross_entropy_with_logits(self.decoder.logits(z, label), target, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (recon + self.beta * kl) / image.shape[0]


class CVAE(Family):
    name = "cvae"
    sampler = "oneshot"
    Config = CVAEConfig
    default_epochs = {"digits": 30, "mnist": 25}

    def build_model(self, config: dict) -> CVAEModel:
        ds = config["dataset"]
        return CVAEModel(ds["shape"], len(ds["label_names"]), CVAEConfig(**config["hparams"]))

    def train(self, model: CVAEModel, dataset, config: dict, epochs: int) -> dict:
        hp = CVAEConfig(**config["hparams"])
        return fit(model, [dataset.x_train, dataset.y_train], lambda m, x, y: m.loss(x, y), epochs=epochs,
                   batch_size=hp.batch_size, lr=hp.lr, seed=config["train"]["seed"], description="train cvae")

    def graphs(self, model: CVAEModel, config: dict) -> dict[str, GraphDef]:
        shape, z = config["dataset"]["shape"], config["hparams"]["latent_dim"]
        n_classes = len(config["dataset"]["label_names"])  # user datasets may have fewer than 4 classes
        label = TensorSpec("label", "int64", ["batch"], "condition", high=n_classes)
        image_shape = ["batch", *shape]
        decode = GraphSpec("decode", inputs=[TensorSpec("noise", "float32", ["batch", z], "noise"), label],
                           outputs=[TensorSpec("sample", "float32", image_shape, "output")],
                           doc="latent z ~ N(0, I) and a label -> image in [-1, 1]")
        encode = GraphSpec("encode", inputs=[TensorSpec("image", "float32", image_shape, "data"), label],
                           outputs=[TensorSpec("mu", "float32", ["batch", z], "output"),
                                    TensorSpec("logvar", "float32", ["batch", z], "output")],
                           doc="image and its label -> posterior mean and log-variance of z")
        b = 2
        return {
            "decode": GraphDef(model.decoder, {"noise": torch.randn(b, z), "label": torch.tensor([1, 3]) % n_classes}, decode),
            "encode": GraphDef(model.encoder, {"image": torch.rand(b, *shape) * 2 - 1, "label": torch.tensor([1, 3]) % n_classes}, encode),
        }

    def sampler_section(self, config: dict) -> dict:
        return {"kind": "oneshot", "graph": "decode", "encoder": {"graph": "encode", "latent": "mu", "input": "image"},
                "defaults": {"temperature": 1.0}}
