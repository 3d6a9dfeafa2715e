"""genctl bench BUNDLE --backends torch,onnxruntime --batch-sizes 1,16,64 [--json FILE]."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genctl.cli.common import console, user_errors
from genctl.cli.options import Eta, GuidanceScale, MaxNewTokens, SamplerChoice, Seed, Steps, Temperature, TopK, TopP, backend_choices


@user_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    backends: Annotated[str, typer.Option(help="Comma-separated NAME+OPTION:PRECISION (+OPTION and :PRECISION optional), "
                                               "e.g. torch,onnxruntime:int8 or tensorrt+nocudagraphs:fp16. "
                                               f"NAME: {backend_choices()}.")] = "torch,onnxruntime",
    precision: Annotated[Optional[str], typer.Option(help="Default precision for backends given without :PRECISION (torch stays fp32, the baseline), "
                                                          "e.g. --backends torch,onnxruntime --precision int8.")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,16,64",
    iters: Annotated[int, typer.Option(help="Timed calls per configuration.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed calls first (torch.compile compiles here).")] = 3,
    seed: Seed = 0,
    steps: Steps = None,
    guidance_scale: GuidanceScale = None,
    eta: Eta = None,
    sampler: SamplerChoice = None,
    max_new_tokens: MaxNewTokens = None,
    temperature: Temperature = None,
    top_k: TopK = None,
    top_p: TopP = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write one record per (backend, batch) here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Draw throughput and p50 latency against batch size per backend into this PNG.")] = None,
) -> None:
    """Time backends side by side in one run: p50/p90/p99 latency, samples/s, speedup vs torch."""
    import contextlib

    from genctl import progress
    from genctl.bench.report import bench_table
    from genctl.bench.runner import check_bench, open_generators, parse_backends, parse_batch_sizes, run_bench
    from genctl.bundle import Bundle
    from genctl.io import check_output_file, write_text_atomic

    if json_out is not None:
        check_output_file(json_out, "bench JSON", (".json",))
    if plot is not None:
        from genctl.render.plots import check_plot_path

        check_plot_path(plot)
    b = Bundle.load(bundle)
    pairs, sizes = parse_backends(backends, precision), parse_batch_sizes(batch_sizes)
    controls = {k: v for k, v in {"steps": steps, "guidance_scale": guidance_scale, "eta": eta, "sampler": sampler,
                                  "max_new_tokens": max_new_tokens,
                                  "temperature": temperature, "top_k": top_k, "top_p": top_p}.items() if v is not None}
    check_bench(b, sizes, warmup=warmup, iters=iters, seed=seed, controls=controls)
    with contextlib.ExitStack() as stack:
        gens = open_generators(b, pairs, stack)  # before the progress bar: a bad backend fails first, in one line
        with progress.bar("bench", len(pairs) * len(sizes)) as advance:
            results = run_bench(b, pairs, sizes, warmup=warmup, iters=iters, seed=seed, controls=controls,
                                on_step=lambda what: advance(done=what), generators=gens)
    console.print(bench_table(results, f"genctl bench {bundle} ({b.family}, {iters} iters after {warmup} warm-up)"))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps([r.to_json() for r in results], indent=2) + "\n", "bench JSON")
        console.print(f"wrote {json_out}")
    if plot is not None:
        from genctl.render.plots import bench_figure, save_figure

        fig = bench_figure([r.to_json() for r in results], title=f"genctl bench: {b.family} ({Path(bundle).name})")
        console.print(f"wrote {save_figure(fig, plot)}")
