"""genctl train FAMILY --dataset NAME --out DIR."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from genctl.cli.common import console, err_console, user_errors


@user_errors
def train(
    family: Annotated[str, typer.Argument(help="Model family: cvae, cgan, cflow, diffusion, textdiffusion, charrnn, chartransformer, ntm.")],
    dataset: Annotated[str, typer.Option(help="Shipped dataset (digits, mnist, names; copy, repeat-copy for ntm) or your data: "
                                              "a folder of class sub-folders, an .npz with x and y, a .txt/.csv of label,text lines.")] = "mnist",
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write (config.json + model.safetensors).")] = Path("runs/model"),
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the family's recipe for this dataset).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, batches and noise.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint folder.")] = False,
) -> None:
    """Train a conditional generative model on a shipped dataset and save a checkpoint."""
    from genctl.training.train import train as run_train

    config = run_train(family, dataset, out, epochs=epochs, seed=seed, overwrite=force,
                       note=lambda line: err_console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True))
    t = dict(config["train"])
    head = f"trained [bold]{family}[/] on {dataset}: {t.pop('epochs')} epochs in {t.pop('seconds', '?')} s"
    t.pop("seed", None)
    t = {k: v for k, v in t.items() if not isinstance(v, (list, dict))}  # e.g. ntm's learning curve: in config.json only
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items())
    console.print(f"{head}{', ' + metrics if metrics else ''} → {out}")
