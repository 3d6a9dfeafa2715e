"""The search: successive halving over candidates, control accuracy and samples/s in one run.

1. Checks (before any work): the criterion, the budget's range, an evaluator for the bundle's data,
   the backends and batch sizes; every (backend, precision) opens before anything is timed.
2. One timed warm-up call of the reference (the bundle's current defaults, fp32, the first backend):
   its cost gives what one candidate needs; a budget below that for the reference and one
   candidate is refused in one line that says how much is needed.
3. Rounds. Round 0 measures every candidate (cheapest first, as many as half the budget allows) on
   a few samples per class; each further round doubles the samples of the survivors (pooled over
   rounds, seed + round: every candidate and the reference see the same seeds) and adds timed calls.
   After each round a candidate is dropped when it is clearly below the criterion (its accuracy
   two standard errors up is still below), when another is clearly better at least as fast, or —
   when the next round would not fit the budget — when it is in the slower half of those that meet
   the criterion (successive halving). Rounds stop at about +-1 point (one standard error) or when
   the budget is spent.
4. The choice: the fastest survivor whose accuracy (same seeds as the reference) is within
   ``max_drop`` points of the reference's (or at least ``min_accuracy``); text families must also
   keep the reference's diversity (distinct names) within the same number of points.

Speed is timed as ``genctl bench`` times it (``bench.runner.time_config``: whole generate calls at
the candidate's batch size, the bench's condition row); accuracy with the evaluators of ``genctl
eval`` (``eval/images.py``, ``eval/text.py``, ``eval/prompts.py`` for text prompts).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.runtime.generator import Generator
from genctl.tune.space import Candidate, candidates

Z = 2.0  # standard errors that make a difference "clear"
FIRST_PER_CLASS = 2  # samples per class (per locale, per prompt) in round 0
SPEED_ITERS = 3  # timed calls per candidate and round
TARGET_SE = 0.01  # about +-1 point
MAX_ROUNDS = 10
MAX_PER_CLASS = 2000


@dataclass
class Criterion:
    max_drop: float | None = 1.0  # points below the reference's accuracy
    min_accuracy: float | None = None  # points (percent)

    def describe(self) -> str:
        if self.min_accuracy is not None:
            return f"accuracy >= {self.min_accuracy:g}%"
        return f"accuracy within {self.max_drop:g} points of the reference"

    def to_json(self) -> dict:
        return {"max_drop": self.max_drop} if self.min_accuracy is None else {"min_accuracy": self.min_accuracy}


@dataclass
class TuneResult:
    bundle: Bundle
    candidates: list[Candidate]
    criterion: Criterion
    chosen: Candidate | None
    budget_s: float
    elapsed_s: float
    seed: int
    evaluator: str
    rounds: int
    reference_at: dict[int, float] = field(default_factory=dict)  # the reference's pooled accuracy after each round (1, 2, ...)

    def threshold(self) -> float | None:
        """The accuracy (fraction) the choice must reach."""
        if self.criterion.min_accuracy is not None:
            return self.criterion.min_accuracy / 100
        acc = self.reference.stats.accuracy
        return None if acc is None else acc - self.criterion.max_drop / 100

    @property
    def reference(self) -> Candidate:
        return self.candidates[0]


def check_criterion(max_drop: float | None, min_accuracy: float | None) -> Criterion:
    if max_drop is not None and min_accuracy is not None:
        raise GenctlError("--max-drop and --min-accuracy", got="both", expected="one criterion: --max-drop P (points below the "
                          "reference) or --min-accuracy A (percent)")
    if min_accuracy is not None:
        if not isinstance(min_accuracy, (int, float)) or not 0 < min_accuracy <= 100:  # NaN fails the range too
            raise GenctlError("--min-accuracy", got=min_accuracy, expected="a percentage in (0, 100]")
        return Criterion(max_drop=None, min_accuracy=float(min_accuracy))
    drop = 1.0 if max_drop is None else max_drop
    if not isinstance(drop, (int, float)) or not 0 <= drop < 100:
        raise GenctlError("--max-drop", got=drop, expected="points of control accuracy in [0, 100), e.g. 1")
    return Criterion(max_drop=float(drop))


def check_budget(budget_s: float) -> float:
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not 0 < budget_s <= 7 * 86400:
        raise GenctlError("--budget-s", got=budget_s, expected="seconds in (0, 604800]")
    return float(budget_s)


def check_tune_evaluator(bundle: Bundle, dataset: str | None) -> str:
    """The evaluator tune measures with; a one-line error naming how to give one when there is none."""
    from genctl.eval.report import check_evaluator

    try:
        check_evaluator(bundle, dataset)
    except GenctlError as exc:
        raise GenctlError(f"genctl tune of bundle '{bundle.path}' needs an evaluator for its dataset (it measures control accuracy)",
                          got=exc.got, expected=exc.expected, fix=exc.fix or "pass --dataset PATH") from None
    if _prompted(bundle):
        return f"{bundle.manifest['dataset']['name']} (held-out prompts)"
    from genctl.eval.dataset import evaluation_dataset

    return evaluation_dataset(bundle, dataset)


def check_batches(text: str | list[int]) -> list[int]:
    from genctl.bench.runner import parse_batch_sizes
    from genctl.checks import MAX_SAMPLES

    sizes = parse_batch_sizes(text) if isinstance(text, str) else list(text)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= MAX_SAMPLES for s in sizes):
        raise GenctlError("--batch", got=repr(text), expected=f"comma-separated batch sizes in 1..{MAX_SAMPLES}, e.g. 1 or 1,16")
    return list(dict.fromkeys(sizes))


def _prompted(bundle: Bundle) -> bool:
    return any(c.takes_prompts for c in bundle.conditions.conditions)


def measure_accuracy(gen: Generator, per_class: int, seed: int, dataset: str | None, controls: dict) -> tuple[float, float, int]:
    """``(accuracy, diversity, samples)`` of ``per_class`` samples per class / locale / held-out prompt."""
    bundle = gen.bundle
    if _prompted(bundle):
        from genctl.eval.prompts import prompt_accuracy

        r = prompt_accuracy(gen, per_class, seed=seed, **controls)
        return r["class_accuracy"], r["diversity"], r["prompts"] * per_class
    if bundle.output_kind == "text":
        from genctl.eval.text import evaluate_text

        r = evaluate_text(gen, n_per_locale=per_class, seed=seed, dataset=dataset, **controls)
        return r["mean_accuracy"], r["diversity"], per_class * len(r["control_accuracy"])
    from genctl.eval.images import control_accuracy

    r = control_accuracy(gen, per_class, seed=seed, dataset=dataset, **controls)
    return r["mean_accuracy"], r["diversity"], per_class * len(r["per_class"])


def measure_speed(gen: Generator, batch: int, iters: int, seed: int, controls: dict) -> list[float]:
    """Seconds per whole generate call at ``batch`` (``bench.runner.time_config``, one warm-up call)."""
    from genctl.bench.runner import time_config

    times, _, _ = time_config(gen, batch, 1, iters, seed, controls)
    return [float(t) for t in times]


def tune(bundle: Bundle, *, backends: list[tuple[str, str | None]], batches: list[int], criterion: Criterion,
         budget_s: float, seed: int = 0, dataset: str | None = None, first_per_class: int = FIRST_PER_CLASS,
         on_step: Callable[[str], None] | None = None) -> TuneResult:
    """Measure the bundle's candidates within ``budget_s`` and choose one (nothing is written here)."""
    from genctl.checks import check_seed

    check_seed(seed + MAX_ROUNDS)
    evaluator = check_tune_evaluator(bundle, dataset)
    eval_data = None if _prompted(bundle) else evaluator
    cands = candidates(bundle, backends, batches)
    ref = cands[0]
    say = on_step or (lambda _: None)
    with contextlib.ExitStack() as stack:
        gens: dict[tuple[str, str], Generator] = {}
        for c in cands:  # open everything first: a missing variant, package or GPU fails before any timing
            if (c.backend, c.precision) not in gens:
                gens[(c.backend, c.precision)] = stack.enter_context(Generator.load(bundle, backend=c.backend, precision=c.precision))
        start = time.perf_counter()
        warm = _warmup(gens[(ref.backend, ref.precision)], ref, first_per_class, seed, eval_data)  # seconds of one candidate
        costs = {"per_sample": warm["generate_s"] / max(1, warm["samples"]), "call_s": warm["call_s"]}
        one = _estimate(ref, ref, costs, first_per_class, warm["classes"])
        needed = 2 * one  # the reference and one candidate
        if budget_s < needed:
            raise GenctlError(f"--budget-s {budget_s:g}", got=f"too small: one candidate here takes about {one:.2g} s "
                              f"(a warm-up call of {warm['samples']} samples took {warm['generate_s']:.2f} s, "
                              f"one of batch {ref.batch} {1e3 * warm['call_s']:.0f} ms)",
                              expected=f"at least {needed:.2g} s for the reference and one candidate",
                              fix=f"pass --budget-s {math.ceil(max(needed, 10 * one))} or more (more candidates fit in more)")
        _prepare_evaluator(bundle, eval_data)  # its first training is not part of the budget
        start += time.perf_counter() - start - warm["generate_s"] - warm["call_s"]
        result = TuneResult(bundle, cands, criterion, None, budget_s, 0.0, seed, evaluator, 0)
        _search(result, gens, start, costs, first_per_class, warm["classes"], eval_data, say)
        result.elapsed_s = time.perf_counter() - start
    result.chosen = choose(result)
    return result


def _prepare_evaluator(bundle: Bundle, dataset: str | None) -> None:
    """Train (or load) the evaluator outside the budget: the first use on a dataset trains it."""
    if bundle.output_kind == "text" and not _prompted(bundle):
        from genctl.eval.text import locale_classifier

        locale_classifier(dataset)
        return
    from genctl.eval.images import load_evaluator

    load_evaluator(bundle.manifest["dataset"]["name"] if _prompted(bundle) else dataset)


def _warmup(gen: Generator, ref: Candidate, per_class: int, seed: int, dataset: str | None) -> dict:
    """One timed generate call of the reference at round 0's size (sessions warm, caches filled)."""
    if _prompted(gen.bundle):
        from genctl.data import captions

        classes = len(captions.eval_prompts(seed))
        cond = next(c for c in gen.bundle.conditions.conditions if c.takes_prompts)
        conditions = {cond.name: [p for p, *_ in captions.eval_prompts(seed)]}
    else:
        cond = gen.bundle.conditions.conditions[0]
        classes = len(cond.names)
        conditions = {cond.name: list(range(classes))}
    from genctl.bench.runner import bench_conditions

    t0 = time.perf_counter()
    gen.generate(conditions, n=per_class, seed=seed, **ref.controls)
    t1 = time.perf_counter()
    gen.generate(bench_conditions(gen.bundle), n=ref.batch, seed=seed, **ref.controls)  # a timed call as bench makes it
    return {"generate_s": t1 - t0, "call_s": time.perf_counter() - t1, "samples": classes * per_class, "classes": classes}


def _relative_cost(c: Candidate, ref: Candidate) -> float:
    """Cost of a candidate's call relative to the reference's (diffusion: proportional to steps)."""
    if "steps" in c.controls and "steps" in ref.controls:
        return c.controls["steps"] / max(1, ref.controls["steps"])
    return 1.0


def _estimate(c: Candidate, ref: Candidate, costs: dict, per_class: int, classes: int) -> float:
    """Seconds to measure an unmeasured ``c`` in round 0, from the reference's costs (warm-up, then measured)."""
    rel = _relative_cost(c, ref)
    acc = costs["accuracy_s"] * rel if "accuracy_s" in costs else costs["per_sample"] * per_class * classes * rel * 1.5
    return acc + costs["call_s"] * rel * max(1.0, c.batch / ref.batch) * (SPEED_ITERS + 1)


def _search(result: TuneResult, gens: dict, start: float, costs: dict, first: int, classes: int,
            dataset: str | None, say: Callable[[str], None]) -> None:
    cands, ref = result.candidates, result.reference
    budget, seed = result.budget_s, result.seed
    spent: dict[int, float] = {}  # id(stats) or id(candidate) -> seconds of its last round (accuracy, speed)
    target = None
    for r in range(MAX_ROUNDS):
        new = first if r == 0 else first * 2 ** (r - 1)  # cumulative samples per class double every round
        alive = [c for c in cands if c.alive]
        if r > 0 and (len(alive) <= 1 or (target is not None and ref.stats.per_class >= target)):
            break
        if r > 0:
            alive = _halve(result, alive, r, budget - (time.perf_counter() - start), spent)
            if alive is None:  # not even the best one more round: the last round's survivors stand
                break
        else:  # the cheapest first (fewest steps, largest batch), so the fast end of the space is measured
            alive = [ref, *sorted(alive[1:], key=lambda c: _rank(result, c, 0))]
        for c in alive:
            elapsed = time.perf_counter() - start
            if not c.reference:
                if r == 0:
                    est = _estimate(c, ref, costs, new, classes)
                    measured = sum(1 for o in alive[1:] if o.stats.rounds or o.times)
                    if elapsed + est > (budget if measured == 0 else 0.5 * budget):  # round 0 leaves half to the survivors
                        c.status = "not measured (budget)"
                        continue
                elif elapsed + _round_cost(c, spent, r) > budget:
                    c.dropped_round, c.status = r, f"stopped r{r}: budget"
                    continue
            if c.stats.rounds == r:  # accuracy: once per round for candidates with the same samples
                say(f"round {r}: {c.backend}:{c.precision} {c.label()} ({new} per class)")
                t0 = time.perf_counter()
                acc, div, n = measure_accuracy(gens[(c.backend, c.precision)], new, seed + r, dataset, c.controls)
                took = time.perf_counter() - t0
                spent[id(c.stats)] = took
                c.stats.seconds += took
                c.stats.correct += acc * n
                c.stats.diversity_sum += div * n
                c.stats.samples += n
                c.stats.per_class += new
                c.stats.rounds += 1
            t0 = time.perf_counter()
            c.times += measure_speed(gens[(c.backend, c.precision)], c.batch, SPEED_ITERS, seed, c.controls)
            spent[id(c)] = time.perf_counter() - t0
            if c.reference and r == 0:  # calibrate round 0's estimates on the reference's real costs
                costs = {**costs, "accuracy_s": spent[id(c.stats)], "call_s": spent[id(c)] / (SPEED_ITERS + 1)}
        result.rounds = r + 1
        result.reference_at[ref.stats.rounds] = ref.stats.accuracy
        if target is None:
            p = min(max(ref.stats.accuracy, 0.05), 0.95)
            target = min(MAX_PER_CLASS, math.ceil(p * (1 - p) / TARGET_SE ** 2 / classes))
        _drop(result, r, (ref.stats.accuracy, ref.stats.samples, ref.stats.diversity))
        if time.perf_counter() - start >= budget:
            break
    for c in cands:
        if c.status == "measured" and not c.stats.samples:
            c.status = "not measured (budget)"


def _round_cost(c: Candidate, spent: dict, r: int) -> float:
    """Seconds ``c`` will take in round ``r``: its accuracy part doubles (as many new samples as it has),
    its timed calls cost what they did."""
    acc = 2 * spent.get(id(c.stats), 0.0) if c.stats.rounds == r and r > 1 else spent.get(id(c.stats), 0.0)
    return (acc if c.stats.rounds == r else 0.0) + spent.get(id(c), 0.0)


def _halve(result: TuneResult, alive: list[Candidate], r: int, remaining: float, spent: dict) -> list[Candidate] | None:
    """Successive halving: keep the better half until the round's cost fits what is left of the budget;
    ``None`` when not even the best candidate and the reference fit (the search ends as it stands)."""
    ref = result.reference

    def cost(group: list[Candidate]) -> float:
        seen, total = set(), 0.0
        for c in group:
            total += spent.get(id(c), 0.0) + (0.0 if id(c.stats) in seen else _round_cost(c, spent, r) - spent.get(id(c), 0.0))
            seen.add(id(c.stats))
        return total

    others = sorted((c for c in alive if not c.reference), key=lambda c: _rank(result, c, r))
    if not others or cost([ref, others[0]]) > remaining:
        return None
    keep = others
    while cost([ref, *keep]) > remaining:
        keep = keep[:len(keep) // 2]
    for c in others:
        if c not in keep:
            c.dropped_round, c.status = r, f"dropped r{r}: halved"
            c.note = "the slower half of those that meet the criterion (or the less accurate), to fit the budget"
    return [ref, *keep]


def _rank(result: TuneResult, c: Candidate, r: int) -> tuple:
    """Halving order: before any measurement, the cheapest first; after, those that meet the criterion
    fastest first, then the rest by accuracy."""
    if r == 0 or c.samples_per_s is None:
        return (0, _relative_cost(c, result.reference) / c.batch, 0.0)
    ok = meets(result, c)
    return (0 if ok else 1, -(c.samples_per_s or 0.0) if ok else -(c.stats.accuracy or 0.0), 0.0)


def _drop(result: TuneResult, r: int, ref_at: tuple) -> None:
    """Drop the clearly worse: below the criterion by two standard errors, or dominated by a clearly
    better candidate that is at least as fast (or clearly faster and at least as accurate)."""
    ref = result.reference
    measured = [c for c in result.candidates if c.alive and c.stats.samples and c.samples_per_s]
    for c in measured:
        if c.reference:
            continue
        gap = _gap(result, c, ref_at)
        if gap + Z * _se_diff(c, ref) < 0:
            c.dropped_round, c.status = r, f"dropped r{r}: below"
            c.note = "clearly below the criterion (two standard errors)"
    live = [c for c in measured if c.alive]
    text = result.bundle.output_kind == "text"
    for c in live:
        if c.reference:
            continue
        for b in live:
            if b is c or not b.alive:
                continue
            if b.stats is c.stats:  # the same samples (another batch size or backend): speed alone decides
                dominated = b.samples_per_s >= 1.25 * c.samples_per_s
            else:
                se = math.sqrt(b.stats.stderr() ** 2 + c.stats.stderr() ** 2)
                keeps_diversity = not text or (b.stats.diversity or 0) >= (c.stats.diversity or 0)
                dominated = keeps_diversity and b.samples_per_s >= c.samples_per_s and b.stats.accuracy - c.stats.accuracy > Z * se
            if dominated:
                c.dropped_round, c.status = r, f"dropped r{r}: dominated"
                c.note = f"dominated by {b.backend}:{b.precision} batch {b.batch} {b.label()}"
                break


def _se_diff(c: Candidate, ref: Candidate) -> float:
    return math.sqrt(c.stats.stderr() ** 2 + ref.stats.stderr() ** 2)


def _gap(result: TuneResult, c: Candidate, ref_at: tuple | None = None) -> float:
    """How far the candidate's accuracy is above the criterion's threshold (fractions, not points)."""
    crit = result.criterion
    if crit.min_accuracy is not None:
        return c.stats.accuracy - crit.min_accuracy / 100
    ref_accuracy = ref_at[0] if ref_at else result.reference.stats.accuracy
    return c.stats.accuracy - (ref_accuracy - crit.max_drop / 100)


def meets(result: TuneResult, c: Candidate) -> bool:
    """The candidate's measured accuracy meets the criterion (text: and keeps the diversity)."""
    if c.stats.accuracy is None or c.samples_per_s is None:
        return False
    if _gap(result, c) < -1e-12:
        return False
    if result.bundle.output_kind == "text" and result.reference.stats.diversity is not None:
        allowed = (result.criterion.max_drop if result.criterion.max_drop is not None else 1.0) / 100
        if (c.stats.diversity or 0.0) < result.reference.stats.diversity - allowed - 1e-12:
            return False
    return True


def choose(result: TuneResult) -> Candidate | None:
    """The fastest survivor that meets the criterion, measured with the same seeds as the reference."""
    ref = result.reference
    finalists = [c for c in result.candidates if c.alive and c.stats.per_class == ref.stats.per_class and meets(result, c)]
    return max(finalists, key=lambda c: (c.samples_per_s, c.reference), default=None)


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Measured candidates no other beats on both accuracy and samples/s."""
    pts = [c for c in cands if c.stats.accuracy is not None and c.samples_per_s]
    front = []
    for c in pts:
        if not any(o is not c and o.stats.accuracy >= c.stats.accuracy and o.samples_per_s >= c.samples_per_s
                   and (o.stats.accuracy > c.stats.accuracy or o.samples_per_s > c.samples_per_s) for o in pts):
            front.append(c)
    return sorted(front, key=lambda c: c.samples_per_s)


def settings_json(c: Candidate) -> dict[str, Any]:
    return {**c.settings(), "accuracy": c.stats.accuracy, "diversity": c.stats.diversity, "samples": c.stats.samples,
            "samples_per_s": c.samples_per_s, "p50_ms": c.p50_ms}
