"""One-shot sampling: noise + conditions → sample in a single graph call (cGAN, cVAE, flows).

Any graph with the call signature ``(noise, <conditions>...) -> sample`` runs here. With an
encoder in the manifest (cVAE), ``images=`` re-conditions real images: encode each with its own
label, then decode the latent with the requested condition.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genctl.conditions import ConditionRows, Control
from genctl.errors import ConditionError
from genctl.runtime.backends.base import Backend
from genctl.runtime.samplers.base import Samples, Sampler


class OneShotSampler(Sampler):
    kind = "oneshot"
    controls = [Control("temperature", float, 1.0, low=0.0, high=10.0, help="noise scale (1 = the prior)")]

    def sample(self, backend: Backend, rows: ConditionRows, n: int, rng: np.random.Generator,
               controls: dict[str, Any], images: np.ndarray | None = None, image_labels: np.ndarray | None = None,
               **_: Any) -> Samples:
        spec = self.bundle.graphs[self.section["graph"]]
        total = rows.n_rows * n
        feeds = rows.feeds(self.bundle.conditions, n)
        for tensor in spec.inputs:
            if tensor.role == "noise":
                feeds[tensor.name] = self.noise(tensor, total, rng, controls["temperature"])
        if images is not None:
            noise_name = next(t.name for t in spec.inputs if t.role == "noise")
            feeds[noise_name] = self._encode(backend, images, image_labels, rows, n)
        out = backend.run(spec.name, feeds)
        return Samples(data=out[spec.output_names[0]], rows=rows.labels, n=n, kind=self.bundle.output_kind)

    def _encode(self, backend: Backend, images: np.ndarray, labels: np.ndarray, rows: ConditionRows, n: int) -> np.ndarray:
        enc = self.section.get("encoder")
        if not enc:
            raise ConditionError(f"--from for family '{self.bundle.family}'", got="an image to re-condition",
                                 expected="a family with an encoder graph (cvae)")
        if len(images) != n:
            raise ConditionError("--from images", got=f"{len(images)} images", expected=f"-n {len(images)} (one sample per image)")
        label_input = self.bundle.conditions.conditions[0].name
        latent = backend.run(enc["graph"], {enc["input"]: images, label_input: labels})[enc["latent"]]
        return np.concatenate([latent] * rows.n_rows, axis=0).astype(np.float32)  # same latents in every row
