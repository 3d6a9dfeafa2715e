"""One-shot sampling: noise + conditions → sample in a single graph call (cGAN, cVAE, flows).

Any graph with the call signature ``(noise, <conditions>...) -> sample`` runs here. With an
encoder in the manifest (cVAE), ``images=`` re-conditions real images: encode each with its own
label, then decode the latent with the requested condition.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from genctl.conditions import ConditionRows, Control
from genctl.errors import ConditionError
from genctl.runtime.backends.base import Backend
from genctl.runtime.samplers.base import Request, Sampler, Samples, condition_feeds, split


class OneShotSampler(Sampler):
    kind = "oneshot"
    label = "One-shot"
    inputs = ("images", "image_labels")  # re-conditioning (cvae: encode graph)
    controls = [Control("temperature", float, 1.0, low=0.0, high=10.0, help="noise scale (1 = the prior)")]

    def sample_batch(self, backend: Backend, requests: list[Request]) -> list[Samples]:
        spec = self.bundle.graphs[self.section["graph"]]
        feeds = condition_feeds(self.bundle.conditions, requests)
        for tensor in spec.inputs:
            if tensor.role == "noise":  # each request's noise from its own rng, scaled by its temperature
                feeds[tensor.name] = np.concatenate([self.noise(tensor, r.total, r.rng, r.controls["temperature"])
                                                     for r in requests])
        images = requests[0].inputs.get("images")
        if images is not None:  # batch_key keeps a re-conditioning request alone
            r = requests[0]
            noise_name = next(t.name for t in spec.inputs if t.role == "noise")
            feeds[noise_name] = self._encode(backend, images, r.inputs.get("image_labels"), r.rows, r.n)
        data = backend.run(spec.name, feeds)[spec.output_names[0]]
        return [Samples(data=data[s], rows=r.rows.labels, n=r.n, kind=self.bundle.output_kind) for r, s in zip(requests, split(requests))]

    def batch_key(self, request: Request):
        return None if request.inputs.get("images") is not None else ()

    def check(self, controls: dict[str, Any], inputs: dict[str, Any]) -> None:
        """Images to re-condition are pixels in [-1, 1], as the model was trained on: NaN or 0..255
        pixels would encode to garbage latents and decode to garbage without any error."""
        images = inputs.get("images")
        if images is None:
            return
        if not self.section.get("encoder"):
            raise ConditionError(f"--from for family '{self.bundle.family}'", got="an image to re-condition",
                                 expected="a family with an encoder graph (cvae)")
        if isinstance(images, (str, os.PathLike)):
            return  # the CLI's up-front check, before it reads the file
        images = np.asarray(images)
        if not np.issubdtype(images.dtype, np.number) or images.size == 0:
            raise ConditionError("--from images", got=f"dtype {images.dtype}, {images.size} values", expected="float pixels in [-1, 1]")
        if not np.isfinite(images).all():
            raise ConditionError("--from images", got=f"{int((~np.isfinite(images)).sum())} NaN or infinite pixels",
                                 expected="finite pixels in [-1, 1]")
        low, high = float(images.min()), float(images.max())
        if low < -1.0 - 1e-3 or high > 1.0 + 1e-3:
            raise ConditionError("--from images", got=f"pixels in [{low:.4g}, {high:.4g}]", expected="pixels in [-1, 1]",
                                 fix="scale 0..255 pixels with x / 127.5 - 1 (PNG files are scaled for you)")

    def _encode(self, backend: Backend, images: np.ndarray, labels: np.ndarray, rows: ConditionRows, n: int) -> np.ndarray:
        enc = self.section.get("encoder")
        if not enc:
            raise ConditionError(f"--from for family '{self.bundle.family}'", got="an image to re-condition",
                                 expected="a family with an encoder graph (cvae)")
        if len(images) != n:
            raise ConditionError("--from images", got=f"{len(images)} image{'' if len(images) == 1 else 's'}",
                                 expected=f"-n {len(images)} (one sample per image)")
        label_input = self.bundle.conditions.conditions[0].name
        latent = backend.run(enc["graph"], {enc["input"]: images, label_input: labels})[enc["latent"]]
        return np.concatenate([latent] * rows.n_rows, axis=0).astype(np.float32)  # same latents in every row
