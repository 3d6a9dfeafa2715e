"""genctl export-triton BUNDLE --out REPO [--max-batch 64 --max-wait-ms 5 --max-queue 256 --instances 1 --graph-backend python]."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from genctl.cli.common import console, user_errors
from genctl.cli.options import Precision, PrecisionOption


class GraphBackend(str, Enum):
    python = "python"
    onnxruntime = "onnxruntime"


@user_errors
def export_triton(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    out: Annotated[Path, typer.Option(help="Model repository folder to write.")] = Path("triton_repo"),
    max_batch: Annotated[int, typer.Option(min=1, help="max_batch_size: requests per call of the generate model, rows of batchable graphs.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Dynamic batcher max_queue_delay.")] = 5.0,
    max_queue_delay_us: Annotated[Optional[int], typer.Option(min=0, help="The same in Triton's unit (overrides --max-wait-ms).")] = None,
    max_queue: Annotated[int, typer.Option(min=1, help="Dynamic batcher queue size; past it Triton rejects.")] = 256,
    instances: Annotated[int, typer.Option(min=1, help="Instances (processes) of every model.")] = 1,
    max_rows: Annotated[int, typer.Option(min=1, help="Samples (condition rows × n) one request may ask for.")] = 1024,
    graph_backend: Annotated[GraphBackend, typer.Option(help="Backend of the per-graph models: python (ONNX Runtime inside "
                                                             "Triton's Python backend; loads anywhere) or onnxruntime (Triton's "
                                                             "native backend of a full installation).")] = GraphBackend.python,
    precision: PrecisionOption = Precision.fp32,
    force: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Write a Triton model repository: <family>_generate (the whole sampling loop, Python backend on ONNX Runtime)
    + one model per ONNX graph, each config.pbtxt with dynamic batching."""
    from genctl.serve.triton import export_triton as write

    if max_queue_delay_us is not None:
        max_wait_ms = max_queue_delay_us / 1000
    repo = write(bundle, out, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, instances=instances,
                 max_rows=max_rows, graph_backend=graph_backend.value, precision=precision.value, force=force)
    models = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").exists())
    console.print(f"wrote Triton model repository {repo}: {', '.join(models)} (see {repo / 'README.md'})")
