"""Pick the evaluation that fits a bundle (by dataset kind and family) and gather one report."""
from __future__ import annotations

from genctl.errors import ConditionError
from genctl.eval.images import control_accuracy


def check_eval(bundle, *, n: int, seed: int = 0, guidance_scales: str | None = None, steps: int | None = None,
               sampler: str | None = None,
               dataset: str | None = None) -> list[float] | None:
    """Refuse bad arguments before the evaluator trains and samples are made; returns the guidance scales.
    ``dataset``: labelled data to evaluate on instead of the bundle's own (``genctl eval --dataset PATH``)."""
    from genctl.checks import MAX_SAMPLES
    from genctl.runtime.generator import check_request

    check_evaluator(bundle, dataset)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_SAMPLES:
        raise ConditionError("-n", got=repr(n), expected=f"an integer in 1..{MAX_SAMPLES} (samples in total)")
    scales = _scales(guidance_scales) if guidance_scales is not None or bundle.sampler["kind"] == "diffusion" else None
    for w in scales or [None]:  # the controls each evaluation pass will use, checked against the sampler's schema
        check_request(bundle, None, 1, seed, guidance_scale=w, steps=steps, sampler=sampler)
    return scales


def evaluate_bundle(gen, *, n: int, seed: int = 0, guidance_scales: str | None = None, steps: int | None = None,
                    sampler: str | None = None,
                    dataset: str | None = None) -> dict:
    bundle = gen.bundle
    check_eval(bundle, n=n, seed=seed, guidance_scales=guidance_scales, steps=steps, sampler=sampler, dataset=dataset)
    if any(c.takes_prompts for c in bundle.conditions.conditions):
        return _evaluate_prompts(gen, n=n, seed=seed, scales=_scales(guidance_scales), steps=steps, sampler=sampler)
    from genctl.eval.dataset import evaluation_dataset

    if bundle.info.get("bits"):  # ntm on copy / repeat copy: bit error by length and repeat count (no data needed)
        from genctl.eval.bits import evaluate_bits

        return evaluate_bits(gen, n=n, seed=seed)
    dataset = evaluation_dataset(bundle, dataset)
    n_classes = len(bundle.conditions.conditions[0].classes)
    per_class = max(1, n // n_classes)
    if bundle.output_kind == "text":
        from genctl.eval.text import evaluate_text

        return evaluate_text(gen, n_per_locale=per_class, seed=seed, dataset=dataset)
    report: dict = {}
    if bundle.sampler["kind"] == "diffusion":
        scales = _scales(guidance_scales)
        for w in scales:
            acc = control_accuracy(gen, per_class, seed=seed, dataset=dataset, guidance_scale=w, steps=steps, sampler=sampler)
            report[f"guidance {w:g}"] = {"accuracy": acc["mean_accuracy"], "diversity": acc["diversity"]}
        report["evaluator_test_accuracy"] = acc["evaluator_test_accuracy"]
        report["diversity_real"] = acc["diversity_real"]
        report["evaluator_data"] = acc["evaluator_data"]
        return report
    acc = control_accuracy(gen, per_class, seed=seed, dataset=dataset)
    report.update({"control_accuracy": acc["mean_accuracy"], "evaluator_test_accuracy": acc["evaluator_test_accuracy"],
                   "per_class": acc["per_class"], "diversity": acc["diversity"], "diversity_real": acc["diversity_real"],
                   "samples": per_class * n_classes, "evaluator_data": acc["evaluator_data"]})
    if "log_prob" in bundle.graphs:  # flows: exact likelihood of the real test set
        from genctl.data import get_dataset
        from genctl.eval.likelihood import bits_per_dim

        ds = get_dataset(dataset)
        report["test_bits_per_dim"] = bits_per_dim(gen, bundle, ds.x_test, ds.y_test)
    return report


def _evaluate_prompts(gen, *, n: int, seed: int, scales: list[float], steps: int | None, sampler: str | None) -> dict:
    """Text-prompted models: held-out prompts at each guidance scale (``eval/prompts.py``)."""
    from genctl.eval.prompts import prompt_accuracy

    per_prompt = max(1, n // 90)
    report: dict = {}
    for w in scales:
        acc = prompt_accuracy(gen, per_prompt, seed=seed, guidance_scale=w, steps=steps, sampler=sampler)
        report[f"guidance {w:g}"] = {"accuracy": acc["class_accuracy"], "thickness": acc["thickness_accuracy"],
                                     "slant": acc["slant_accuracy"], "bold/thin ink": acc["bold_over_thin_ink"],
                                     "slant pairs right way": acc["slant_pairs_right_way"], "diversity": acc["diversity"]}
    report["evaluator_test_accuracy"] = acc["evaluator_test_accuracy"]
    report["held_out_prompts"] = f"{acc['prompts']} x {per_prompt} samples, e.g. {acc['examples'][0]!r}"
    return report


def check_evaluator(bundle, dataset: str | None = None) -> None:
    """An evaluator needs labelled data — a shipped dataset, the user data the bundle was trained on,
    or ``dataset`` — whose labels are the first condition's classes (``genctl/eval/dataset.py``), or,
    for a text condition, a shipped dataset with the attributes its captions were measured by."""
    from genctl.data import DATASETS
    from genctl.eval.dataset import evaluation_dataset

    if bundle.info.get("bits"):  # bit error against the task itself (genctl/eval/bits.py)
        return
    name = bundle.manifest.get("dataset", {}).get("name")
    first = bundle.conditions.conditions[0] if bundle.conditions.conditions else None
    if name in DATASETS and first is not None and first.takes_prompts:
        from genctl.eval.prompts import text_condition

        text_condition(bundle)
        return
    evaluation_dataset(bundle, dataset)


def _scales(text: str | None) -> list[float]:
    if text is None:
        return [0.0, 1.0, 3.0, 5.0]
    try:
        scales = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        scales = []
    if not scales:
        raise ConditionError("--guidance-scales", got=repr(text), expected="comma-separated numbers, e.g. 0,1,3,5")
    return scales
