"""Control accuracy of a text-prompted image model, on phrasings it never saw in training.

Every prompt comes from the HELD_OUT templates of ``genctl/data/captions.py`` (10 digits x 3
thicknesses x 3 slants), so a model that memorised its training sentences does not pass. Each
generated image is checked three ways:

- **class**: the dataset's evaluator classifier (``eval/images.py``) against the prompt's digit;
- **thickness** and **slant**: measured on the image (mean ink, the moment shear) and binned with
  the per-class thresholds the training captions used (stored in the bundle's ``info.attributes``)
  against what the prompt asked;
- the **effect sizes** behind the targets: mean ink of "bold" prompts over "thin" prompts of the
  same digits, and the share of (left, right) prompt pairs, same digit, thickness and noise row,
  whose measured slant moves the way the prompts ask.
"""
from __future__ import annotations

import numpy as np

from genctl.data import captions
from genctl.errors import ConditionError
from genctl.eval.images import diversity, load_evaluator


def text_condition(bundle):
    """The bundle's prompt condition, or a one-line error naming what prompt eval needs."""
    conds = [c for c in bundle.conditions.conditions if c.takes_prompts]
    if len(conds) != 1 or "attributes" not in bundle.info:
        raise ConditionError(f"Prompt eval of bundle '{bundle.path}'", got="no text condition with measured attributes",
                             expected="a textdiffusion bundle trained on a shipped digit dataset (info.attributes)")
    return conds[0]


def prompt_accuracy(generator, n_per_prompt: int, seed: int = 0, **controls) -> dict:
    """Generate ``n_per_prompt`` images for each of the 90 held-out prompts and score them."""
    bundle = generator.bundle
    cond = text_condition(bundle)
    prompts = captions.eval_prompts(seed)
    texts = [p for p, *_ in prompts]
    labels, thick, slant = (np.repeat([p[i] for p in prompts], n_per_prompt) for i in (1, 2, 3))
    samples = generator.generate({cond.name: texts}, n=n_per_prompt, seed=seed, **controls)
    images = samples.data
    evaluator, info = load_evaluator(bundle.manifest["dataset"]["name"])
    ink, shear = captions.ink(images), captions.slant(images)
    got_thick, got_slant = captions.apply_bins(labels, ink, shear, bundle.info["attributes"])
    pairs = _slant_pairs(shear, prompts, n_per_prompt)
    return {
        "prompts": len(prompts), "n_per_prompt": n_per_prompt, "seed": seed, "controls": controls,
        "class_accuracy": float((evaluator.predict(images) == labels).mean()),
        "thickness_accuracy": float((got_thick == thick).mean()),
        "slant_accuracy": float((got_slant == slant).mean()),
        "bold_over_thin_ink": float(ink[thick == 2].mean() / max(ink[thick == 0].mean(), 1e-9)),
        "slant_pairs_right_way": pairs,
        "evaluator_test_accuracy": info["test_accuracy"],
        "diversity": float(np.mean([diversity(images[i:i + n_per_prompt], seed=i) for i in range(0, len(images), n_per_prompt)]))
        if n_per_prompt > 1 else 0.0,
        "examples": texts[:3],
    }


def _slant_pairs(shear: np.ndarray, prompts: list, n: int) -> float:
    """Share of (left-prompt, right-prompt) samples — same digit, thickness and sample index —
    where the right prompt's image leans further right than the left prompt's."""
    row = {(label, t, s): i for i, (_, label, t, s) in enumerate(prompts)}
    wins, total = 0, 0
    for (label, t, s), i in row.items():
        if s != 0:
            continue
        j = row[(label, t, 2)]
        left, right = shear[i * n:(i + 1) * n], shear[j * n:(j + 1) * n]
        wins += int((right > left).sum())
        total += n
    return wins / total if total else 0.0
