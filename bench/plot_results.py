"""Draw bench/results/*.json as PNGs beside them (what BENCHMARKS.md shows).

    python bench/plot_results.py [--device "2 vCPU AMD EPYC (AVX2), no GPU"] [--results bench/results]

One bench plot per family (``<family>.bench.png``), the diffusion guidance sweep
(``diffusion.guidance.png``) and a summary across families (``summary.png``). ``--device`` names
the machine the results were measured on (default: this machine); bench/run_suite.sh calls this
after a run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from genctl.render.plots import bench_figure, guidance_figure, save_figure, summary_figure

FAMILIES = ("cvae", "cgan", "cflow", "diffusion", "charrnn", "chartransformer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--device", default=None, help="machine the results were measured on (plot titles)")
    args = parser.parse_args()
    benches = {}
    for family in FAMILIES:
        path = args.results / f"{family}.bench.json"
        if path.is_file():
            benches[family] = json.loads(path.read_text())
            title = f"genctl bench: {family}" + (" (DDIM-50, guidance 3)" if family == "diffusion" else "")
            print(save_figure(bench_figure(benches[family], title=title, device=args.device), args.results / f"{family}.bench.png"))
    sweep = args.results / "diffusion.eval.json"
    if sweep.is_file():
        report = json.loads(sweep.read_text())
        print(save_figure(guidance_figure(report, title="genctl eval: diffusion (mnist), control vs guidance", device=args.device),
                          args.results / "diffusion.guidance.png"))
    if benches:
        print(save_figure(summary_figure(benches, title="genctl bench: speedup vs torch eager, every family", device=args.device),
                          args.results / "summary.png"))


if __name__ == "__main__":
    main()
