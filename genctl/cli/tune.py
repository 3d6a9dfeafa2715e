"""genctl tune BUNDLE [--max-drop P | --min-accuracy A] [--backends ...] [--batch B] [--budget-s S] [--plot FILE] [--json FILE] [--dry-run]."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genctl.cli.common import console, user_errors
from genctl.cli.options import Seed, backend_choices


@user_errors
def tune(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (tune writes its choice into the manifest).")],
    max_drop: Annotated[Optional[float], typer.Option(help="Points of control accuracy the choice may lose against the "
                                                           "reference (the bundle's current defaults, same seeds). Default 1.",
                                                      show_default=False)] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(help="Instead of --max-drop: the control accuracy (percent) the "
                                                               "choice must reach.", show_default=False)] = None,
    backends: Annotated[str, typer.Option(help="Comma-separated NAME+OPTION[:PRECISION]; without :PRECISION, fp32 and every "
                                               f"built variant that passed its gate. NAME: {backend_choices()}.")] = "onnxruntime",
    batch: Annotated[str, typer.Option(help="Batch size(s) to time, comma-separated, e.g. 1 or 1,16.")] = "1",
    budget_s: Annotated[float, typer.Option(help="Seconds of measuring (the evaluator's first training is not counted); "
                                                 "successive halving drops candidates to fit.")] = 300.0,
    seed: Seed = 0,
    dataset: Annotated[Optional[str], typer.Option(help="Labelled data for the evaluator (as genctl eval --dataset; default: "
                                                        "the data the bundle was trained on).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Draw accuracy against samples/s, the Pareto front marked, into this PNG.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the tune record (table, reference, choice) here.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure and report, but leave the bundle's manifest as it is.")] = False,
) -> None:
    """Throughput at equal control: the fastest solver/steps/guidance (diffusion), sampling controls (text),
    precision, backend and batch whose control accuracy stays within --max-drop points of the current
    defaults; recorded as the bundle's sampler defaults (manifest "tuned")."""
    import contextlib

    from genctl import progress
    from genctl.bundle import Bundle
    from genctl.io import check_output_file, write_text_atomic
    from genctl.tune import check_batches, check_budget, check_criterion, parse_backends, tune_table, tuned_record, write_tuned
    from genctl.tune import tune as run_tune
    from genctl.tune.search import check_tune_evaluator

    criterion = check_criterion(max_drop, min_accuracy)
    budget = check_budget(budget_s)
    sizes = check_batches(batch)
    pairs = parse_backends(backends)
    if json_out is not None:
        check_output_file(json_out, "tune JSON", (".json",))
    if plot is not None:
        from genctl.render.plots import check_plot_path

        check_plot_path(plot)
    b = Bundle.load(bundle)
    check_tune_evaluator(b, dataset)  # before any backend opens or the evaluator trains
    with contextlib.ExitStack() as stack:
        bar: list = []

        def say(what: str) -> None:  # the bar starts with the first measurement, after the checks and the warm-up
            if not bar:
                bar.append(stack.enter_context(progress.bar(f"tune (budget {budget:g} s)", None)))  # no total: the budget ends it
            bar[0](1, now=what)

        result = run_tune(b, backends=pairs, batches=sizes, criterion=criterion, budget_s=budget, seed=seed, dataset=dataset,
                          on_step=say)
    console.print(tune_table(result, f"genctl tune {bundle} ({b.family}, evaluator {result.evaluator})"))
    record = tuned_record(result)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(record, indent=2) + "\n", "tune JSON")
        console.print(f"wrote {json_out}")
    if plot is not None:
        from genctl.render.plots import save_figure, tune_figure

        fig = tune_figure(record["table"], title=f"genctl tune: {b.family} ({Path(bundle).name})", criterion=criterion.describe(),
                          threshold=None if result.threshold() is None else 100 * result.threshold())
        console.print(f"wrote {save_figure(fig, plot)}")
    chosen = result.chosen
    if dry_run:
        console.print("dry run: the manifest is unchanged" + ("" if chosen is None else f"; would choose {_describe(chosen)}"))
        return
    write_tuned(result)  # one line and an unchanged manifest when nothing meets the criterion
    console.print(f"tuned {bundle}: sampler defaults {chosen.controls or '(unchanged: no controls tuned)'}; "
                  f"run it with --backend {chosen.backend} --precision {chosen.precision}"
                  + (f" at batch {chosen.batch}" if len(sizes) > 1 else ""))


def _describe(c) -> str:
    return f"{c.backend}:{c.precision} batch {c.batch} {c.label()}"
