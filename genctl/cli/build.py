"""genctl build BUNDLE --target onnxruntime|tensorrt|tensorrt-rtx --precision fp32|fp16|int8 [--batch 1:8:64]."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genctl.cli.common import console, user_errors


@user_errors
def build(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by 'genctl export'.")],
    target: Annotated[str, typer.Option(help="onnxruntime (graph variants, run anywhere), tensorrt (engines for this GPU) or "
                                             "tensorrt-rtx (engines for RTX/Ampere/Ada/Blackwell GPUs; builds without a GPU).")] = "onnxruntime",
    precision: Annotated[str, typer.Option(help="onnxruntime: fp32 (offline-optimized), fp16 (for GPUs), int8 (dynamic quantization, CPUs); "
                                                "tensorrt, tensorrt-rtx: fp32, fp16 (from the fp16 ONNX variant).")] = "int8",
    batch: Annotated[str, typer.Option(help="TensorRT profile for the batch dim: MIN:OPT:MAX.")] = "1:8:64",
    dim: Annotated[Optional[list[str]], typer.Option("--dim", help="TensorRT profile of another dim: NAME=MIN:OPT:MAX (seq, past).")] = None,
    keep_fp32: Annotated[Optional[list[str]], typer.Option("--keep-fp32", help="Leave this graph in fp32 inside the variant (repeatable).")] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="int8: one weight scale per output channel (default) or per tensor.")] = True,
    reduce_range: Annotated[Optional[bool], typer.Option("--reduce-range/--full-range",
                                                         help="int8: 7-bit weights (default on x86 CPUs without VNNI, whose int8 kernels saturate) "
                                                              "or full 8-bit.",
                                                         show_default="auto")] = None,
    control_samples: Annotated[Optional[int], typer.Option(help="Samples per class (images) or locale (names) for the control-accuracy check; 0 skips it.",
                                                           show_default="20 images, 100 names")] = None,
    compute_capability: Annotated[Optional[str], typer.Option("--compute-capability", help="tensorrt-rtx: GPUs to build for, e.g. 8.6,8.9 or 'current'.",
                                                              show_default="8.0,8.6,8.9,12.0")] = None,
    force: Annotated[bool, typer.Option("--force", help="Keep a variant that fails the quality gate (marked failed); rebuild cached engines.")] = False,
) -> None:
    """Build an optimized variant and run the quality gate (graph + loop parity, control accuracy)."""
    from genctl.errors import GenctlError
    from genctl.optimize.build import GateConfig, Int8Options
    from genctl.optimize.build import build as run_build

    dims = {}
    for item in dim or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GenctlError(f"--dim '{item}'", got="no NAME=", expected="NAME=MIN:OPT:MAX, e.g. seq=1:32:128")
        dims[name] = value
    record = run_build(bundle, target=target, precision=precision, batch=batch, dims=dims, force=force,
                       keep_fp32=keep_fp32 or [], int8=Int8Options(per_channel=per_channel, reduce_range=reduce_range),
                       gate=GateConfig(control_n_per_class=control_samples), compute_capability=compute_capability)
    _report(record, target, precision)


def _report(record: dict, target: str, precision: str) -> None:
    gate = record["gate"]
    if "skipped" in gate:  # TensorRT-RTX engines built where no GPU can run them
        times = ", ".join(f"{g} {r['build_seconds']:.2f}s" for g, r in record["graphs"].items())
        console.print(f"{target} {precision}: built for compute capability {record['platform']['compute_capability']} ({times}); "
                      f"gate not run: {gate['skipped']}", highlight=False)
        console.print(f"  wrote {', '.join(g['file'] for g in record['graphs'].values())}", highlight=False)
        return
    worst = {g: r["max_error"] for g, r in gate["graphs"].items()}
    loop = gate["loop"]
    loop_text = (f"loop err {loop['max_error']:.1e}" if "max_error" in loop
                 else f"loop {loop['identical_fraction']:.0%} identical")
    control = gate["control"]
    control_text = (f"control {control['variant_points']:.1f} vs fp32 {control['fp32_points']:.1f}"
                    if "variant_points" in control else f"control skipped ({control.get('skipped')})")
    where = ", ".join(g["file"] for g in record["graphs"].values())
    status = "[bold green]passed[/]" if record["status"] == "passed" else "[bold red]FAILED (kept with --force)[/]"
    console.print(f"{target} {precision}: gate {status}; graph err "
                  + ", ".join(f"{g} {e:.1e}" for g, e in worst.items()) + f"; {loop_text}; {control_text}")
    for line in gate["failures"]:
        console.print(f"  [red]✗[/] {line}", highlight=False)
    console.print(f"  wrote {where}", highlight=False)
