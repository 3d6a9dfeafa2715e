"""genctl eval BUNDLE --backend onnxruntime -n 1000."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from genctl.cli.common import console, user_errors
from genctl.cli.options import BackendOption, Precision, PrecisionOption, SamplerChoice, Seed, Steps


@user_errors
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    backend: BackendOption = "auto",
    precision: PrecisionOption = Precision.fp32,
    n: Annotated[int, typer.Option("-n", help="Generated samples in total (split evenly over classes).")] = 1000,
    seed: Seed = 0,
    guidance_scales: Annotated[Optional[str], typer.Option(help="Diffusion: comma-separated guidance scales to sweep.")] = None,
    steps: Steps = None,
    sampler: SamplerChoice = None,
    dataset: Annotated[Optional[str], typer.Option(help="Labelled data to train the evaluator on: a shipped dataset or your "
                                                        "class folder / .npz / label,text .csv whose labels are the first "
                                                        "condition's (default: the data the bundle was trained on).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Diffusion with --guidance-scales: "
                                                      "draw control accuracy and diversity against guidance into this PNG; "
                                                      "bit-vector models (ntm): the read and write head weightings of one "
                                                      "repeat-copy example over time.")] = None,
) -> None:
    """Control accuracy (evaluator classifier trained on the same data), diversity, likelihood."""
    from genctl.bundle import Bundle
    from genctl.errors import ConditionError
    from genctl.eval.report import check_eval, evaluate_bundle
    from genctl.io import check_output_file, write_text_atomic
    from genctl.runtime.generator import Generator

    if json_out is not None:
        check_output_file(json_out, "eval JSON", (".json",))
    b = Bundle.load(bundle)
    if plot is not None:
        from genctl.render.plots import check_plot_path

        check_plot_path(plot)
        if not guidance_scales and not b.info.get("bits"):
            raise ConditionError(f"--plot '{plot}'", got="no --guidance-scales",
                                 expected="--guidance-scales W1,W2,... (the plot draws control against guidance)")
    check_eval(b, n=n, seed=seed, guidance_scales=guidance_scales, steps=steps, sampler=sampler, dataset=dataset)  # before the evaluator trains
    with Generator.load(b, backend=backend, precision=precision.value) as gen:
        report = evaluate_bundle(gen, n=n, seed=seed, guidance_scales=guidance_scales, steps=steps, sampler=sampler, dataset=dataset)
    console.print(report_table(report, f"genctl eval {bundle} ({gen.bundle.family}, {gen.backend.describe()})"))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n", "eval JSON")
        console.print(f"wrote {json_out}")
    if plot is not None and b.info.get("bits"):
        _heads_plot(b, backend, precision.value, seed, plot, Path(bundle).name)
    elif plot is not None:
        from genctl.render.plots import guidance_figure, save_figure

        fig = guidance_figure(report, title=f"genctl eval: {gen.bundle.family} ({Path(bundle).name}), {gen.backend.describe()}")
        console.print(f"wrote {save_figure(fig, plot)}")


def _heads_plot(bundle, backend: str, precision: str, seed: int, plot: Path, name: str) -> None:
    """One example through the step graph: input, output and the heads' weightings (``genctl/render/heads.py``)."""
    import numpy as np

    from genctl.eval.bits import head_trace, random_bits
    from genctl.render.heads import heads_figure
    from genctl.render.plots import save_figure
    from genctl.runtime.generator import Generator

    cond = bundle.conditions.conditions[0]
    repeats = min(3, len(cond.names))
    length = min(int(bundle.info["bits"]["random_input"]), int(bundle.info["bits"]["max_input"]))
    prefix = random_bits(np.random.default_rng(seed), length, int(bundle.info["bits"]["width"]))
    with Generator.load(bundle, backend=backend, precision=precision) as gen:
        trace = head_trace(gen, prefix, repeats - 1)
        title = (f"genctl eval: {bundle.family} ({name}), {gen.backend.describe()}: {length} vectors, "
                 f"{cond.name}={cond.names[repeats - 1]}{'' if trace['ended'] else ' (no end marker)'}")
    console.print(f"wrote {save_figure(heads_figure(trace, title=title), plot)}")


def report_table(report: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    return table
