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
                                                      "draw control accuracy and diversity against guidance into this PNG.")] = None,
) -> None:
    """Control accuracy (evaluator classifier trained on the same data), diversity, likelihood."""
    from genctl.bundle import Bundle
    from genctl.errors import ConditionError
    from genctl.eval.report import check_eval, evaluate_bundle
    from genctl.io import check_output_file, write_text_atomic
    from genctl.runtime.generator import Generator

    if json_out is not None:
        check_output_file(json_out, "eval JSON", (".json",))
    if plot is not None:
        from genctl.render.plots import check_plot_path

        check_plot_path(plot)
        if not guidance_scales:
            raise ConditionError(f"--plot '{plot}'", got="no --guidance-scales",
                                 expected="--guidance-scales W1,W2,... (the plot draws control against guidance)")
    b = Bundle.load(bundle)
    check_eval(b, n=n, seed=seed, guidance_scales=guidance_scales, steps=steps, sampler=sampler, dataset=dataset)  # before the evaluator trains
    with Generator.load(b, backend=backend, precision=precision.value) as gen:
        report = evaluate_bundle(gen, n=n, seed=seed, guidance_scales=guidance_scales, steps=steps, sampler=sampler, dataset=dataset)
    console.print(report_table(report, f"genctl eval {bundle} ({gen.bundle.family}, {gen.backend.describe()})"))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n", "eval JSON")
        console.print(f"wrote {json_out}")
    if plot is not None:
        from genctl.render.plots import guidance_figure, save_figure

        fig = guidance_figure(report, title=f"genctl eval: {gen.bundle.family} ({Path(bundle).name}), {gen.backend.describe()}")
        console.print(f"wrote {save_figure(fig, plot)}")


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
