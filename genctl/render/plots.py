"""Benchmark and eval results as pictures (matplotlib, Agg: no display needed).

Every function takes the JSON records genctl writes (``bench --json``, ``eval --json``), so the
same code draws a live run and results committed years ago, and returns the matplotlib Figure
(tests count its series; ``save_figure`` writes it as a PNG atomically).

- ``bench_figure``: throughput (samples/s, or tokens/s for text) against batch size, one line per
  backend/precision, log axes, the torch baseline drawn black and dashed; p50 latency beside it.
- ``guidance_figure``: control accuracy (and diversity) against the classifier-free guidance scale.
- ``summary_figure``: speedup vs torch eager at batch 1 and at the largest batch, per family.
- ``tune_figure``: control accuracy against samples/s per tuned candidate, the Pareto front joined,
  the reference and the chosen setting marked (``tune --json`` records).
"""
from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from genctl.errors import GenctlError
from genctl.io import check_writable_parent

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window or need a display
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path, option: str = "--plot") -> Path:
    """Refuse a bad plot path before any work: PNG only, in a writable folder, not a folder."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenctlError(f"{option} '{path}'", got=f"suffix '{path.suffix}'", expected="a .png file")
    if path.is_dir():
        raise GenctlError(f"{option} '{path}'", got="a directory", expected="a .png file path")
    check_writable_parent(path, "file")
    return path


def machine() -> str:
    """A short name of this machine for plot titles: the GPU if there is one, else the CPU."""
    from genctl.runtime.devices import gpu_names

    gpus = gpu_names()
    if gpus:
        return gpus[0].split(",")[0]
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model or platform.processor() or platform.machine()}, no GPU"


def series_label(record: Mapping[str, Any]) -> str:
    precision = record.get("precision", "fp32")
    return record["backend"] + ("" if precision == "fp32" else f":{precision}")


def baseline_label(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The series ``vs torch`` divides by, as in ``bench.runner``: the first fp32 ``torch`` entry
    (``torch``, or ``torch+cuda`` on a GPU box)."""
    return next((series_label(r) for r in records
                 if r["backend"].split("+")[0] == "torch" and r.get("precision", "fp32") == "fp32"), None)


def _series(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(series_label(r), []).append(r)
    return {k: sorted(v, key=lambda r: r["batch_size"]) for k, v in out.items()}


def throughput_key(records: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Text families are compared by tokens/s, images by samples/s."""
    if records and all("tokens_per_s" in r for r in records):
        return "tokens_per_s", "tokens/s"
    return "samples_per_s", "samples/s"


def bench_figure(records: Sequence[Mapping[str, Any]], *, title: str, device: str | None = None):
    """Two panels over batch size (log axes): throughput, and p50 latency; one line per series."""
    if not records:
        raise GenctlError("Bench plot", got="no results", expected="at least one (backend, batch) record")
    plt = _pyplot()
    key, unit = throughput_key(records)
    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=100)
    baseline = baseline_label(records)
    for i, (label, rows) in enumerate(_series(records).items()):
        base = label == baseline
        style = dict(color="black", linestyle="--", linewidth=2.2, marker="s") if base else \
            dict(color=COLORS[i % len(COLORS)], linewidth=1.8, marker="o")
        name = f"{label} (baseline)" if base else label
        sizes = [r["batch_size"] for r in rows]
        ax_tp.plot(sizes, [r[key] for r in rows], label=name, **style)
        ax_lat.plot(sizes, [r["p50_ms"] for r in rows], label=name, **style)
    for ax, ylabel in ((ax_tp, f"{unit} (higher is better)"), (ax_lat, "p50 latency, ms (lower is better)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({r["batch_size"] for r in records}))
        ax.get_xaxis().set_major_formatter(_plain_ticks())
        ax.get_yaxis().set_major_formatter(_plain_ticks())
        lo, hi = ax.get_ylim()
        if hi / lo <= 10:  # under a decade there is no major tick to read: label the minor ones
            ax.get_yaxis().set_minor_formatter(_plain_ticks())
        ax.grid(True, which="both", alpha=0.3)
    ax_tp.set_title(f"throughput ({unit})")
    ax_lat.set_title("latency per generate call (p50)")
    ax_tp.legend(fontsize=8, loc="best")
    fig.suptitle(f"{title}\n{device or machine()}", fontsize=11)
    fig.tight_layout()
    return fig


def guidance_figure(report: Mapping[str, Any], *, title: str, device: str | None = None):
    """Control accuracy (%) and diversity against guidance scale, from an ``eval --guidance-scales`` report."""
    points = sorted((float(k.split()[1]), v) for k, v in report.items() if k.startswith("guidance ") and isinstance(v, dict))
    if not points:
        raise GenctlError("Eval plot", got="a report without guidance scales",
                          expected="an eval of a diffusion bundle with --guidance-scales, e.g. 0,1,3,5")
    plt = _pyplot()
    scales = [w for w, _ in points]
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=100)
    ax.plot(scales, [100 * v["accuracy"] for _, v in points], marker="o", color=COLORS[0], linewidth=2,
            label="control accuracy (evaluator)")
    for key, style in (("thickness", "--"), ("slant", "-.")):  # text prompts: attributes measured on the images
        if all(key in v for _, v in points):
            ax.plot(scales, [100 * v[key] for _, v in points], marker="^", color=COLORS[2 if key == "thickness" else 3],
                    linewidth=1.6, linestyle=style, label=f"{key} as prompted (measured)")
    if "evaluator_test_accuracy" in report:
        ax.axhline(100 * report["evaluator_test_accuracy"], color=COLORS[0], linestyle=":", linewidth=1.2,
                   label="evaluator on real test digits")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("control accuracy, %" + (" (held-out prompts)" if "held_out_prompts" in report else ""))
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if all("diversity" in v for _, v in points):
        ax2 = ax.twinx()
        ax2.plot(scales, [v["diversity"] for _, v in points], marker="s", color=COLORS[1], linewidth=2, label="diversity")
        if "diversity_real" in report:
            ax2.axhline(report["diversity_real"], color=COLORS[1], linestyle=":", linewidth=1.2, label="diversity of real digits")
        ax2.set_ylabel("diversity (mean pairwise distance)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.set_title(f"{title}\n{device or machine()}", fontsize=11)
    fig.tight_layout()
    return fig


def speedups(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """``{series: (speedup at the smallest batch, at the largest)}`` vs torch in the same run."""
    sizes = sorted({r["batch_size"] for r in records})
    out = {}
    baseline = baseline_label(records)
    for label, rows in _series(records).items():
        if label == baseline:
            continue
        by = {r["batch_size"]: r.get("speedup_vs_torch") for r in rows}
        out[label] = (by.get(sizes[0]), by.get(sizes[-1]))
    return out


def summary_figure(families: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str, device: str | None = None):
    """Grouped bars: each family's speedup vs torch eager, at batch 1 (left) and the largest batch (right)."""
    plt = _pyplot()
    import numpy as np

    per_family = {f: speedups(r) for f, r in families.items()}
    labels = sorted({s for sp in per_family.values() for s in sp}, key=lambda s: (s.count(":"), s))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), dpi=100, sharey=True)
    x = np.arange(len(per_family))
    width = 0.8 / max(1, len(labels))
    for panel, ax in enumerate(axes):
        for i, label in enumerate(labels):
            values = [per_family[f].get(label, (None, None))[panel] for f in per_family]
            ax.bar(x + (i - (len(labels) - 1) / 2) * width, [v or 0 for v in values], width, label=label,
                   color=COLORS[(i + 1) % len(COLORS)])
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.5, label="torch eager (= 1)")
        ax.set_xticks(x, list(per_family), rotation=15)
        ax.set_title("batch 1" if panel == 0 else "largest batch benched")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("speedup vs torch eager (samples/s or tokens/s)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{title}\n{device or machine()}", fontsize=11)
    fig.tight_layout()
    return fig


def tune_figure(records: Sequence[Mapping[str, Any]], *, title: str, criterion: str = "", threshold: float | None = None,
                device: str | None = None):
    """Accuracy (%) against samples/s (log x), one point per measured candidate: the Pareto front
    joined by a line, the reference and the chosen candidate marked, dropped candidates faded;
    ``threshold`` (percent) draws the criterion's accuracy floor."""
    points = [r for r in records if r.get("accuracy") is not None and r.get("samples_per_s")]
    if not points:
        raise GenctlError("Tune plot", got="no measured candidates", expected="at least one candidate with accuracy and samples/s")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    alive = [r for r in points if r.get("status") == "measured" and not r.get("front")]
    dropped = [r for r in points if r.get("status") != "measured" and not r.get("front")]
    for rows, style in ((dropped, dict(color="#bbbbbb", marker="x", s=22, label="dropped early (fewer samples)")),
                        (alive, dict(color=COLORS[0], marker="o", s=30, label="measured to the end"))):
        if rows:
            ax.scatter([r["samples_per_s"] for r in rows], [100 * r["accuracy"] for r in rows], zorder=2, **style)
    front = sorted((r for r in points if r.get("front")), key=lambda r: r["samples_per_s"])
    ax.plot([r["samples_per_s"] for r in front], [100 * r["accuracy"] for r in front], color=COLORS[1], marker="D",
            linewidth=1.8, markersize=6, zorder=3, label="Pareto front")
    for r in front:
        ax.annotate(r.get("label", ""), (r["samples_per_s"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color=COLORS[1])
    ref = next((r for r in points if r.get("reference")), None)
    if ref is not None:
        ax.scatter([ref["samples_per_s"]], [100 * ref["accuracy"]], s=160, facecolors="none", edgecolors="black", linewidths=2,
                   zorder=4, label=f"reference (current defaults): {ref.get('label', '')}")
    chosen = next((r for r in points if r.get("chosen")), None)
    if chosen is not None:
        ax.scatter([chosen["samples_per_s"]], [100 * chosen["accuracy"]], s=260, marker="*", color=COLORS[2], edgecolors="black",
                   zorder=5, label=f"chosen: {chosen['backend']}:{chosen['precision']} b{chosen['batch']} {chosen.get('label', '')}")
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle=":", linewidth=1.2, label=f"criterion: {threshold:.1f}%")
    ax.set_xscale("log")
    ax.get_xaxis().set_major_formatter(_plain_ticks())
    ax.get_xaxis().set_minor_formatter(_plain_ticks())
    ax.set_xlabel("samples/s (higher is better)")
    ax.set_ylabel("control accuracy, % (evaluator)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{title}\n{criterion + '; ' if criterion else ''}{device or machine()}", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG; the file appears whole or not at all (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plot is an ordinary file
        os.replace(tmp, path)
    except OSError as exc:
        raise GenctlError(f"Plot '{path}'", got=f"a failed write ({exc.strerror})", expected="a writable file") from None
    finally:
        _pyplot().close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_ticks():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}")
