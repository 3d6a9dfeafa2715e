"""genctl tune: throughput at equal control on tiny digits bundles (copies: tune writes into the bundle)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genctl.bundle import Bundle
from genctl.cli.main import app
from genctl.runtime.generator import Generator

runner = CliRunner()
TINY_DIFFUSION = {"width": 8, "groups": 4, "channel_mult": [1, 2], "timesteps": 100}  # as tests/test_diffusion.py: one trained bundle


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def diffusion(make_bundle):
    return make_bundle("diffusion", epochs=2, **TINY_DIFFUSION).path


def test_cvae_tune_precision_backend_batch(cvae_bundle, copy_bundle, tmp_path):
    from genctl.optimize.build import build

    path = copy_bundle(cvae_bundle)
    build(path, target="onnxruntime", precision="int8")  # a gated variant: tune searches it beside fp32
    before = Bundle.load(path).sampler["defaults"]
    res = invoke("tune", path, "--backends", "onnxruntime,torch", "--batch", "1,4", "--budget-s", 10, "--json", tmp_path / "t.json")
    assert res.exit_code == 0, res.output
    assert "Pareto" in res.output and "reference" in res.output
    record = json.loads((tmp_path / "t.json").read_text())
    table = record["table"]
    assert {(r["backend"], r["precision"]) for r in table} == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("torch", "fp32")}
    assert {r["batch"] for r in table} == {1, 4}
    assert sum(r["chosen"] for r in table) == 1 and any(r["front"] for r in table)
    chosen, ref = record["chosen"], record["reference"]
    assert (ref["backend"], ref["precision"], ref["batch"]) == ("onnxruntime", "fp32", 1)
    assert chosen["accuracy"] >= ref["accuracy"] - 0.01 - 1e-9  # default --max-drop 1 point, same seeds
    assert chosen["samples_per_s"] >= max(r["samples_per_s"] for r in table if r["reference"])
    bundle = Bundle.load(path)  # verifies every hash: the manifest is not among them
    assert bundle.manifest["tuned"]["criterion"] == {"max_drop": 1.0}
    assert bundle.manifest["tuned"]["chosen"] == chosen and bundle.sampler["defaults"] == before  # one-shot: no controls tuned
    res = invoke("inspect", path)
    assert res.exit_code == 0 and "tuned" in res.output and "max drop 1 points" in res.output


def test_diffusion_tune_picks_fewer_steps_and_generate_uses_them(diffusion, copy_bundle, tmp_path):
    from genctl.runtime.samplers import sampler_class
    from genctl.tune import control_grid

    path = copy_bundle(diffusion)
    solvers = {c for c in sampler_class("diffusion").controls if c.name == "sampler"}.pop().choices
    grid = control_grid(Bundle.load(path))
    assert {g["sampler"] for g in grid} <= set(solvers) and {"ddim", "ddpm"} <= {g["sampler"] for g in grid}
    assert {g["steps"] for g in grid} == {10, 15, 20, 30, 50} and {g["guidance_scale"] for g in grid} == {2.0, 3.0, 5.0}
    res = invoke("tune", path, "--max-drop", 40, "--budget-s", 12, "--plot", tmp_path / "tune.png", "--json", tmp_path / "t.json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tune.png").stat().st_size > 10_000
    manifest = Bundle.load(path).manifest  # still verifies
    tuned = manifest["tuned"]
    chosen, ref = tuned["chosen"], tuned["reference"]
    assert ref["controls"] == {"sampler": "ddim", "steps": 50, "guidance_scale": 3.0}
    assert chosen["controls"]["steps"] < 50
    assert chosen["accuracy"] >= ref["accuracy"] - 0.40 and chosen["samples"] == ref["samples"]  # within the drop, same seeds
    assert tuned["elapsed_s"] < 12 * 1.3
    assert manifest["sampler"]["defaults"] == {**tuned["previous_defaults"], **chosen["controls"]}
    with Generator.load(path, backend="onnxruntime") as gen:  # generate / bench / serve take unset controls from the defaults
        samples = gen.generate({"label": 3}, n=2, seed=0)
    assert samples.meta["steps"] == chosen["controls"]["steps"] and samples.meta["sampler"] == chosen["controls"]["sampler"]
    assert samples.meta["guidance_scale"] == chosen["controls"]["guidance_scale"]


@pytest.mark.parametrize("args, fragments", [
    (["--max-drop", "-1"], ["--max-drop", "[0, 100)"]),
    (["--max-drop", "100"], ["--max-drop", "got 100"]),
    (["--max-drop", "1", "--min-accuracy", "90"], ["--max-drop and --min-accuracy", "got both"]),
    (["--min-accuracy", "0"], ["--min-accuracy", "(0, 100]"]),
    (["--budget-s", "0"], ["--budget-s", "(0, 604800]"]),
    (["--batch", "0"], ["--batch"]),
    (["--backends", "onnxruntim"], ["Backend 'onnxruntim'"]),
])
def test_bad_input_is_one_line_before_any_work(cvae_bundle, args, fragments):
    res = invoke("tune", cvae_bundle, *args)
    one_line_error(res, *fragments)


def test_budget_too_small_says_how_much_is_needed(cvae_bundle, copy_bundle):
    path = copy_bundle(cvae_bundle)
    before = (path / "manifest.json").read_bytes()
    res = invoke("tune", path, "--budget-s", "0.0001")
    one_line_error(res, "--budget-s 0.0001", "too small", "one candidate here takes about", "expected at least", "fix: pass --budget-s")
    assert (path / "manifest.json").read_bytes() == before


def test_bundle_without_an_evaluator(cvae_bundle, copy_bundle):
    path = copy_bundle(cvae_bundle)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["dataset"] = {"name": "somebody-elses-data"}  # no shipped dataset, no recorded path
    (path / "manifest.json").write_text(json.dumps(manifest))
    res = invoke("tune", path)
    one_line_error(res, "genctl tune", "needs an evaluator", "--dataset PATH")


def test_interrupted_tune_leaves_the_manifest(cvae_bundle, copy_bundle, monkeypatch):
    from genctl.tune import search

    path = copy_bundle(cvae_bundle)
    before = (path / "manifest.json").read_bytes()
    calls = []
    real = search.measure_accuracy

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "measure_accuracy", flaky)
    res = invoke("tune", path, "--backends", "onnxruntime,torch", "--batch", "1,2", "--budget-s", 30)
    assert res.exit_code == 130 and "interrupted" in res.output, res.output
    assert len(calls) == 3
    assert (path / "manifest.json").read_bytes() == before
    assert not [p for p in path.iterdir() if p.name.startswith(".manifest")]  # no temp file left
    Bundle.load(path)


def test_dry_run_and_min_accuracy_leave_the_manifest(cvae_bundle, copy_bundle):
    path = copy_bundle(cvae_bundle)
    before = (path / "manifest.json").read_bytes()
    res = invoke("tune", path, "--min-accuracy", 50, "--budget-s", 5, "--dry-run")
    assert res.exit_code == 0 and "dry run" in res.output, res.output
    assert (path / "manifest.json").read_bytes() == before
