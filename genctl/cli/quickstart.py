"""genctl quickstart: the whole path on an embedded default (cVAE on shipped MNIST digits)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from genctl.cli.common import console, user_errors

MARKER = ".genctl-quickstart"


@user_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the checkpoint, bundle, grid and bench JSON.")] = Path("genctl-quickstart"),
    epochs: Annotated[int, typer.Option(help="Training epochs (the default fits in about a minute on 2 cores).")] = 12,
    dataset: Annotated[str, typer.Option(help="mnist (28x28) or digits (8x8, seconds).")] = "mnist",
) -> None:
    """Train a small cVAE, export it, generate a grid, and bench torch vs onnxruntime (table, JSON and plot)."""
    import json

    from genctl.bench.report import bench_table
    from genctl.bench.runner import run_bench
    from genctl.errors import GenctlError
    from genctl.export import export_bundle
    from genctl.io import check_writable_parent, write_text_atomic
    from genctl.render.plots import bench_figure, save_figure
    from genctl.render.samples import write_samples
    from genctl.runtime.generator import Generator
    from genctl.training.train import check_train, train

    if out.exists() and not (out / MARKER).exists():
        raise GenctlError(f"--out '{out}'", got="an existing folder not made by quickstart", expected="a new folder or an earlier quickstart's")
    check_writable_parent(out / MARKER if out.exists() else out, "folder")  # every check before a minute of training
    check_train("cvae", dataset, out / "checkpoint", epochs=epochs, overwrite=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).touch()
    except OSError as exc:
        raise GenctlError(f"--out '{out}'", got=exc.strerror, expected="a folder that can be created") from None
    start = time.perf_counter()
    train("cvae", dataset, out / "checkpoint", epochs=epochs, overwrite=True)
    bundle = export_bundle(out / "checkpoint", out / "bundle", overwrite=True)
    with Generator.load(bundle, backend="onnxruntime") as gen:
        write_samples(gen.generate(None, n=10, seed=0), out / "grid.png")
    results = run_bench(bundle, [("torch", "fp32"), ("onnxruntime", "fp32")], [1, 64], warmup=3, iters=30)
    records = [r.to_json() for r in results]
    write_text_atomic(out / "bench.json", json.dumps(records, indent=2) + "\n", "bench JSON")
    save_figure(bench_figure(records, title="genctl quickstart: cvae, torch eager vs onnxruntime"), out / "bench.png")
    console.print(bench_table(results, "torch eager vs onnxruntime (samples/s per batch size)"))
    console.print(f"\n[bold]done in {time.perf_counter() - start:.0f} s[/]\n"
                  f"  checkpoint  {out / 'checkpoint'}\n  bundle      {out / 'bundle'}  (genctl inspect {out / 'bundle'})\n"
                  f"  grid        {out / 'grid.png'}  (rows = labels 0..9)\n  bench       {out / 'bench.json'}, {out / 'bench.png'}\n"
                  f"next: genctl generate {out / 'bundle'} --cond label=7 -n 16 --out seven.png")
