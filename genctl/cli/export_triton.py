"""genctl export-triton BUNDLE --out REPO [--max-batch 64 --max-wait-ms 5 --max-queue 256]."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genctl.cli.common import console, user_errors


@user_errors
def export_triton(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    out: Annotated[Path, typer.Option(help="Model repository folder to write.")] = Path("triton_repo"),
    max_batch: Annotated[int, typer.Option(min=1, help="max_batch_size of batchable graphs.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Dynamic batcher max_queue_delay.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Dynamic batcher queue size; past it Triton rejects.")] = 256,
    force: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Write a Triton Inference Server model repository (ONNX graphs + config.pbtxt with dynamic batching)."""
    from genctl.serve.triton import export_triton as write

    repo = write(bundle, out, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, force=force)
    models = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").exists())
    console.print(f"wrote Triton model repository {repo}: {', '.join(models)} (see {repo / 'README.md'})")
