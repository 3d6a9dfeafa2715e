"""Render BenchResults as a rich table (and JSON, via BenchResult.to_json)."""
from __future__ import annotations

from rich import box
from rich.table import Table

from genctl.bench.runner import BenchResult

EXTRA_COLUMNS = [("encode_ms", "encode ms", "{:.2f}"), ("encode_pct", "encode %", "{:.1f}"),
                 ("per_step_ms", "step ms", "{:.3f}"), ("steps_per_s", "steps/s", "{:.0f}"),
                 ("tokens_per_s", "tok/s", "{:.0f}"), ("ttft_ms", "TTFT ms", "{:.2f}"),
                 ("itl_p50_ms", "ITL p50", "{:.3f}"), ("itl_p99_ms", "ITL p99", "{:.3f}")]


def bench_table(results: list[BenchResult], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY)
    for col in ("backend", "batch", "p50 ms", "p90 ms", "p99 ms", "samples/s"):
        table.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    extras = [c for c in EXTRA_COLUMNS if any(c[0] in r.extra for r in results)]
    for _, header, _ in extras:
        table.add_column(header, justify="right")
    table.add_column("vs torch", justify="right", style="bold")
    compiled = any(r.speedup_vs_compile is not None for r in results)
    if compiled:
        table.add_column("vs compile", justify="right", style="bold")
    table.add_column("overhead", justify="right")
    for r in results:
        speed = "—" if r.speedup_vs_torch is None else f"{r.speedup_vs_torch:.2f}×"
        cells = [r.runtime, str(r.batch_size), f"{r.p50_ms:.3f}",
                 f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}", f"{r.samples_per_s:,.1f}"]
        cells += [fmt.format(r.extra[key]) if key in r.extra else "" for key, _, fmt in extras]
        cells.append(speed)
        if compiled:
            cells.append("—" if r.speedup_vs_compile is None else f"{r.speedup_vs_compile:.2f}×")
        cells.append(f"{r.overhead_pct:.1f}%")
        table.add_row(*cells)
    return table
