"""Bits per dimension of a likelihood model (cflow) on the discrete pixel scale.

The ``log_prob(image, label) -> log_prob`` graph gives ``log p(x | y)`` in nats per image for a
*continuous* image ``x`` in [-1, 1] (a density w.r.t. Lebesgue measure on the [-1, 1] scale).
Pixels are really discrete: ``v`` in ``{0, ..., L-1}`` with ``L = 256`` (mnist) or ``L = 17``
(digits, values 0..16), shown as ``x = 2 v / (L - 1) - 1``. The conversion, with uniform
dequantization (Theis et al. 2016; Real NVP; Glow):

1. recover the level: ``v = round((x + 1) / 2 * (L - 1))``;
2. dequantize: ``x' = 2 (v + u) / L - 1`` with ``u ~ U[0, 1)^D`` from a seeded rng, so bin ``v``
   is the cube ``[2v/L - 1, 2(v+1)/L - 1)`` of side ``2 / L`` in [-1, 1] space;
3. the discrete probability is ``P(v) = ∫_bin p(x) dx >= exp E_u[log p(x')] * (2 / L)^D``
   (Jensen), so ``-log P(v) <= -log p(x') + D log(L / 2)`` nats;
4. bits/dim ``= (-log p(x') + D log(L / 2)) / (D ln 2)``, averaged over images.

This is the standard upper bound on the discrete negative log-likelihood that flows report. A
model putting uniform density on [-1, 1]^D (``log p = -D log 2``) scores exactly ``log2 L`` bits/dim
(8 for mnist): the baseline any useful model must beat.
"""
from __future__ import annotations

import math

import numpy as np

from genctl.data.images import LEVELS
from genctl.errors import GenctlError

BATCH = 256  # images per graph call


def pixel_levels(bundle) -> int:
    """``L`` for a bundle: the family's ``info.output.levels``, else the dataset's known value."""
    levels = bundle.info.get("output", {}).get("levels") or LEVELS.get(bundle.manifest.get("dataset", {}).get("name"))
    if not levels:
        raise GenctlError(f"Bundle '{bundle.path}' pixel levels", got="no info.output.levels and an unknown dataset",
                          expected=f"a bundle trained on one of {sorted(LEVELS)} or with info.output.levels")
    return int(levels)


def dequantize(images: np.ndarray, levels: int, rng: np.random.Generator) -> np.ndarray:
    """[-1, 1] images at discrete levels -> uniform-dequantized continuous images in [-1, 1)."""
    v = np.rint((images.astype(np.float64) + 1.0) / 2.0 * (levels - 1))
    u = rng.random(images.shape)
    return (2.0 * (v + u) / levels - 1.0).astype(np.float32)


def log_prob(backend, bundle, images: np.ndarray, labels: np.ndarray, graph: str = "log_prob") -> np.ndarray:
    """Run the ``log_prob`` graph in batches of ``BATCH``; returns ``(N,)`` float64 nats."""
    if graph not in bundle.graphs:
        raise GenctlError(f"Bundle '{bundle.path}' graph '{graph}'", got=f"graphs {sorted(bundle.graphs)}",
                          expected="a likelihood family bundle (cflow)")
    spec = bundle.graphs[graph]
    image_name, label_name = spec.input_names
    out = []
    for start in range(0, len(images), BATCH):
        feeds = {image_name: images[start:start + BATCH], label_name: labels[start:start + BATCH]}
        out.append(backend.run(graph, feeds)[spec.output_names[0]].astype(np.float64))
    return np.concatenate(out)


def bits_per_dim(generator_or_backend, bundle, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    """Mean bits/dim of ``images`` (N, C, H, W) in [-1, 1] with ``labels`` (N,) on the discrete scale."""
    backend = getattr(generator_or_backend, "backend", generator_or_backend)  # a Generator or a Backend
    images, labels = np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise GenctlError("bits_per_dim images/labels", got=f"shapes {images.shape} and {labels.shape}",
                          expected="(N, C, H, W) images and (N,) labels, N >= 1")
    levels = pixel_levels(bundle)
    x = dequantize(images, levels, np.random.default_rng(seed))
    dims = int(np.prod(images.shape[1:]))
    nll = -log_prob(backend, bundle, x, labels) + dims * math.log(levels / 2.0)  # nats per image, discrete
    return float(nll.mean() / (dims * math.log(2.0)))
