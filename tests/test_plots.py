"""Bench and eval plots: real PNGs with the expected series, and bad --plot paths refused up front."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from genctl.cli.main import app
from genctl.errors import GenctlError
from genctl.render import plots

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_png(path: Path) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and 400 <= img.width <= 3000 and 300 <= img.height <= 3000, img.size


def lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_bench_plot_draws_one_series_per_backend_with_the_baseline_marked(cvae_bundle, tmp_path):
    res = invoke("bench", cvae_bundle, "--backends", "torch,onnxruntime,onnxruntime+iobinding", "--batch-sizes", "1,4",
                 "--iters", 2, "--warmup", 0, "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png")
    assert res.exit_code == 0, res.output
    assert_png(tmp_path / "b.png")
    records = json.loads((tmp_path / "b.json").read_text())
    fig = plots.bench_figure(records, title="t", device="test box")
    throughput, latency = fig.axes
    for ax in (throughput, latency):
        series = lines(ax)
        assert set(series) == {"torch (baseline)", "onnxruntime", "onnxruntime+iobinding"}
        assert series["torch (baseline)"].get_linestyle() == "--" and series["torch (baseline)"].get_color() == "black"
        assert all(list(line.get_xdata()) == [1, 4] for line in series.values())
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    by = {(r["backend"], r["batch_size"]): r for r in records}
    assert list(lines(throughput)["onnxruntime"].get_ydata()) == [by["onnxruntime", 1]["samples_per_s"], by["onnxruntime", 4]["samples_per_s"]]
    assert list(lines(latency)["torch (baseline)"].get_ydata()) == [by["torch", 1]["p50_ms"], by["torch", 4]["p50_ms"]]
    assert "test box" in fig._suptitle.get_text()


def test_the_baseline_series_is_the_first_torch_entry_as_in_the_table():
    """On a GPU box the bench lists torch+cuda first: that series is the baseline, not left out."""
    rows = [{"backend": b, "precision": p, "batch_size": 1, "speedup_vs_torch": s}
            for b, p, s in [("torch+cuda", "fp32", 1.0), ("torch-compile+cuda", "fp32", 3.0), ("torch+cpu", "fp32", 0.2),
                            ("onnxruntime", "fp16", 4.0)]]
    assert plots.baseline_label(rows) == "torch+cuda"
    assert plots.speedups(rows) == {"torch-compile+cuda": (3.0, 3.0), "torch+cpu": (0.2, 0.2), "onnxruntime:fp16": (4.0, 4.0)}
    assert plots.baseline_label(rows[1:2]) is None


def test_text_results_are_plotted_as_tokens_per_second():
    records = json.loads((RESULTS / "charrnn.bench.json").read_text())
    fig = plots.bench_figure(records, title="charrnn", device="d")
    assert "tokens/s" in fig.axes[0].get_ylabel()
    assert len(lines(fig.axes[0])) == len({(r["backend"], r["precision"]) for r in records}) == 4
    assert "onnxruntime:int8" in lines(fig.axes[0])


def test_guidance_plot_has_accuracy_diversity_and_their_references(tmp_path):
    report = json.loads((RESULTS / "diffusion.eval.json").read_text())  # a real 40-epoch mnist sweep
    fig = plots.guidance_figure(report, title="diffusion", device="d")
    acc_ax, div_ax = fig.axes
    assert set(lines(acc_ax)) == {"control accuracy (evaluator)", "evaluator on real test digits"}
    assert set(lines(div_ax)) == {"diversity", "diversity of real digits"}
    assert list(lines(acc_ax)["control accuracy (evaluator)"].get_xdata()) == [0.0, 1.0, 3.0, 5.0]
    assert_png(plots.save_figure(fig, tmp_path / "g.png"))
    with pytest.raises(GenctlError, match=r"Eval plot \| got a report without guidance scales"):
        plots.guidance_figure({"accuracy": 0.9}, title="cvae")


def test_summary_plot_has_a_bar_per_family_and_series(tmp_path):
    families = {f: json.loads((RESULTS / f"{f}.bench.json").read_text()) for f in ("cvae", "cgan", "charrnn")}
    fig = plots.summary_figure(families, title="summary", device="d")
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["cvae", "cgan", "charrnn"]
        assert len(ax.patches) == 3 * 3  # onnxruntime, torch-compile, onnxruntime:int8 per family
    assert plots.speedups(families["cvae"])["onnxruntime"][0] == pytest.approx(
        next(r["speedup_vs_torch"] for r in families["cvae"] if r["backend"] == "onnxruntime" and r["batch_size"] == 1))
    assert_png(plots.save_figure(fig, tmp_path / "s.png"))


@pytest.mark.parametrize("name, message", [
    ("b.jpg", r"--plot '.*b\.jpg' \| got suffix '\.jpg' \| expected a \.png file"),
    ("not-a-folder/b.png", r"Output file '.*b\.png' \| got '.*not-a-folder' is not a writable directory"),
])
def test_bad_plot_path_is_refused_before_benching(cvae_bundle, tmp_path, name, message):
    (tmp_path / "not-a-folder").write_text("a file")
    res = invoke("bench", cvae_bundle, "--batch-sizes", "1", "--iters", 1, "--plot", tmp_path / name)
    assert res.exit_code == 1 and re.search(message, res.output), res.output
    assert "Traceback" not in res.output and "samples/s" not in res.output  # nothing was benched
    assert len(res.output.strip().splitlines()) == 1


def test_eval_plot_needs_a_guidance_sweep(cvae_bundle, tmp_path):
    res = invoke("eval", cvae_bundle, "-n", 10, "--plot", tmp_path / "e.png")
    assert res.exit_code == 1 and "got no --guidance-scales" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "e.png").exists()


def test_committed_result_plots_are_small_pngs():
    pngs = sorted(RESULTS.glob("*.png"))
    assert {p.name for p in pngs} >= {"cvae.bench.png", "diffusion.guidance.png", "summary.png"}
    for p in pngs:
        assert p.stat().st_size < 200_000, p
        assert_png(p)
