"""The quality gate: an optimized variant must match the fp32 graphs before a bundle keeps it.

Three checks, all against the exported fp32 graphs on ONNX Runtime (the reference every export
already matched to PyTorch):

1. graph parity — every graph on random feeds (``parity.random_inputs``) at a few batch sizes;
   each output's ``parity.scaled_error`` must stay within the precision's tolerance
   (``parity.TOLERANCE``). NaN/Inf and constant ("black") outputs are named separately with the
   usual fix: keep that graph in fp32 (``--keep-fp32 GRAPH``).
2. loop parity — the family's sampler on the variant and on fp32 with the same seed: the samples
   must agree within the tolerance times the sampler's ``loop_tolerance_factor``. Token outputs
   (text families) compare the sampled sequences instead: identical for fp32/opt; for fp16/int8
   the share of identical sequences is recorded but not gated, since one flipped near-tie in the
   logits changes every later token (per-step logits are gated by graph parity).
3. control accuracy — where the family has an evaluator (image families: the classifier of
   ``genctl.eval.images``; text families: the label classifier of ``genctl.eval.text``; trained on
   the shipped dataset or on the user's labelled data the bundle was trained on,
   ``genctl.eval.dataset``) the
   variant may lose at most ``max_accuracy_drop`` points against fp32 on a fixed seed set. Names
   are cheap and each is a noisy vote, so text uses 100 per locale where images use 20 per class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from genctl.bundle import Bundle
from genctl.errors import ParityError
from genctl.export import parity
from genctl.runtime.backends.base import Backend

EXACT_TOKENS = ("fp32", "opt")  # precisions whose sampled tokens must be identical to fp32


@dataclass(kw_only=True)
class GateConfig:
    batches: tuple[int, ...] = (1, 7)  # graph-parity batch sizes (inside a TensorRT profile's range)
    seed: int = 0  # random feeds and the sampling loop
    loop_n: int = 3  # samples per condition in the loop check
    control_n_per_class: int | None = None  # per class / locale for control accuracy; None = 20 images, 100 names; 0 = skip
    max_accuracy_drop: float = 2.0  # points of control accuracy a variant may lose


def graph_examples(bundle: Bundle) -> dict[str, dict]:
    """The family's example inputs per graph: they fix non-batch dims and valid integer ranges."""
    from genctl.checkpoint import load_checkpoint
    from genctl.families import get_family

    config, _ = load_checkpoint(bundle.source_dir())
    family = get_family(config["family"])
    model = family.build_model(config)  # untrained weights are enough: only the examples are used
    return {name: g.example for name, g in family.graphs(model, config).items()}


def graph_parity(bundle: Bundle, variant: Backend, reference: Backend, precision: str, config: GateConfig) -> dict:
    """Per graph: ``{"outputs": {name: error}, "tolerance", "max_error", "passed", "problems"}``."""
    tolerance = parity.TOLERANCE[precision]
    examples = graph_examples(bundle)
    reports = {}
    for name, spec in bundle.graphs.items():
        errors: dict[str, float] = {}
        problems: dict[str, str] = {}
        for i, batch in enumerate(config.batches):
            feeds = parity.random_inputs(spec, examples[name], batch, seed=config.seed + 1000 + i)
            ref, got = reference.run(name, feeds), variant.run(name, feeds)
            for out in spec.output_names:
                problem = output_problem(got[out], ref[out])
                if problem:
                    problems.setdefault(out, problem)
                err = parity.scaled_error(got[out], ref[out])
                prev = errors.get(out, 0.0)
                errors[out] = err if np.isnan(err) or np.isnan(prev) else max(prev, err)
        values = list(errors.values())
        reports[name] = {"batches": list(config.batches), "tolerance": tolerance, "outputs": errors,
                         "max_error": float("nan") if any(np.isnan(v) for v in values) else max(values),
                         "problems": problems,
                         "passed": bool(not problems and all(v <= tolerance for v in values))}
    return reports


def output_problem(got: np.ndarray, ref: np.ndarray) -> str | None:
    """``"NaN/Inf"`` or ``"constant output"`` — the classic fp16 failures — else None."""
    if np.issubdtype(got.dtype, np.floating):
        if not np.all(np.isfinite(got)):
            return "NaN/Inf"
        if got.size > 1 and float(np.ptp(got)) == 0.0 and float(np.ptp(ref)) > 0.0:
            return "constant output"
    return None


def loop_parity(bundle: Bundle, variant: Backend, reference: Backend, precision: str, config: GateConfig) -> dict:
    """The sampler on both backends with one seed, for the conditions export's loop parity used."""
    from genctl.runtime.generator import Generator

    request = bundle.conditions.parity_request()
    ref = Generator(bundle, reference).generate(request, n=config.loop_n, seed=config.seed)
    got = Generator(bundle, variant).generate(request, n=config.loop_n, seed=config.seed)
    report: dict = {"seed": config.seed, "n_per_condition": config.loop_n}
    if np.issubdtype(ref.data.dtype, np.integer):
        same = _identical_rows(got.data, ref.data)
        report.update(identical_fraction=same, gated=precision in EXACT_TOKENS,
                      passed=bool(same == 1.0 or precision not in EXACT_TOKENS))
        return report
    tolerance = parity.TOLERANCE[precision] * bundle.sampler.get("loop_tolerance_factor", 1)
    err = parity.scaled_error(got.data, ref.data)
    problem = output_problem(got.data, ref.data)
    report.update(max_error=err, tolerance=tolerance, passed=bool(problem is None and err <= tolerance))
    if problem:
        report["problem"] = problem
    return report


def _identical_rows(got: np.ndarray, ref: np.ndarray) -> float:
    if got.shape != ref.shape:
        return 0.0
    rows = (got.reshape(len(got), -1) == ref.reshape(len(ref), -1)).all(axis=1)
    return float(rows.mean()) if rows.size else 1.0


def control_samples(bundle: Bundle, config: GateConfig) -> int:
    """Samples per class (images) or locale (names) for the control check."""
    if config.control_n_per_class is not None:
        return config.control_n_per_class
    return 100 if bundle.output_kind == "text" else 20


def control_check(bundle: Bundle, variant: Backend, reference: Backend, config: GateConfig) -> dict:
    """Control accuracy of fp32 vs the variant where an evaluator exists; a skip reason otherwise."""
    from genctl.runtime.generator import Generator

    n = control_samples(bundle, config)
    if n <= 0:
        return {"skipped": "disabled (control_n_per_class=0)"}
    from genctl.data import DATASETS

    dataset = None
    if any(c.takes_prompts for c in bundle.conditions.conditions):
        if bundle.manifest.get("dataset", {}).get("name") not in DATASETS:
            return {"skipped": "no evaluator: a text-prompted bundle of no shipped dataset (user data or bring-your-own model)"}
        if "attributes" not in bundle.info:  # e.g. an untrained (epochs=0) export: no caption thresholds to score against
            return {"skipped": "no evaluator: a text-prompted bundle without measured attributes (info.attributes)"}
        from genctl.eval.prompts import prompt_accuracy

        def evaluate(gen, n_per_class, seed):  # the same number of images as a class-conditioned check
            return prompt_accuracy(gen, max(1, 10 * n_per_class // 90), seed)["class_accuracy"]
    elif bundle.output_kind in ("text", "image"):
        from genctl.eval.dataset import optional_dataset

        dataset, why = optional_dataset(bundle)  # shipped data, or the user data the bundle was trained on
        if dataset is None:
            return {"skipped": f"no evaluator: {why}"}
        if bundle.output_kind == "text":
            from genctl.eval.text import evaluate_text as evaluate
        else:
            from genctl.eval.images import control_accuracy as evaluate
    else:
        return {"skipped": "no evaluator for this family's output"}
    points = {}
    for label, backend in (("fp32", reference), ("variant", variant)):
        kwargs = {"dataset": dataset} if dataset is not None else {}
        points[label] = _as_points(evaluate(Generator(bundle, backend), n, config.seed, **kwargs))
    drop = points["fp32"] - points["variant"]
    return {"n_per_class": n, "fp32_points": points["fp32"], "variant_points": points["variant"],
            "drop_points": drop, "max_drop_points": config.max_accuracy_drop, "passed": bool(drop <= config.max_accuracy_drop)}


def _as_points(result) -> float:
    """Accuracy in percentage points from the evaluator's result (a dict with ``accuracy`` or a number)."""
    value = result.get("mean_accuracy", result.get("accuracy")) if isinstance(result, dict) else result
    value = float(value)
    return value * 100.0 if value <= 1.0 else value


def run_gate(bundle: Bundle, precision: str, open_variant: Callable[[], Backend],
             open_reference: Callable[[], Backend], config: GateConfig | None = None) -> dict:
    """Run every check; returns the report with ``passed`` and one line per failure."""
    config = config or GateConfig()
    with open_reference() as reference, open_variant() as variant:
        report = {"precision": precision, "reference": f"{reference.describe()} fp32", "variant": variant.describe(),
                  "graphs": graph_parity(bundle, variant, reference, precision, config)}
        report["loop"] = loop_parity(bundle, variant, reference, precision, config)
        report["control"] = control_check(bundle, variant, reference, config)
    report["failures"] = failures(report)
    report["passed"] = not report["failures"]
    return report


def failures(report: dict) -> list[str]:
    """One line per failed check: ``"decode.sample NaN/Inf (keep graph 'decode' in fp32: --keep-fp32 decode)"``."""
    out = []
    for graph, rep in report["graphs"].items():
        for name, err in rep["outputs"].items():
            problem = rep["problems"].get(name)
            if problem:
                out.append(f"{graph}.{name} {problem} (keep graph '{graph}' in fp32: --keep-fp32 {graph})")
            elif not err <= rep["tolerance"]:
                out.append(f"{graph}.{name} error {err:.2e} > {rep['tolerance']:.0e}")
    loop = report["loop"]
    if not loop["passed"]:
        if "identical_fraction" in loop:
            out.append(f"loop: {loop['identical_fraction']:.0%} of sampled sequences identical to fp32 (expected all)")
        else:
            what = f"{loop['problem']} in the samples" if loop.get("problem") else \
                f"error {loop['max_error']:.2e} > {loop['tolerance']:.0e}"
            out.append(f"loop (seed {loop['seed']}): {what}")
    control = report["control"]
    if control.get("passed") is False:
        out.append(f"control accuracy {control['variant_points']:.1f} vs fp32 {control['fp32_points']:.1f} "
                   f"(drop {control['drop_points']:.1f} > {control['max_drop_points']:.0f} points)")
    return out


def gate_error(what: str, report: dict) -> ParityError:
    """The one-line refusal of a variant or engine set whose gate ``report`` failed."""
    return ParityError(f"Quality gate for '{what}'", got="; ".join(report["failures"]),
                       expected=f"every graph and the sampling loop within the {report['precision']} tolerance of fp32",
                       fix="keep the failing graph in fp32 (--keep-fp32 GRAPH) or pass --force to keep it marked failed; nothing was written")
