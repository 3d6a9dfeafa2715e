"""Fail before the work, not after: a table of bad inputs for every command and the serve body.

Each row runs one command as a user would (typer's CliRunner) and must end in one line
``error: <subject> | got ... | expected ...``, a non-zero exit and no traceback. Afterwards the shared
bundle must still load and give the same samples as before the battery (same seed): a bad input
never changes what is on disk. Rows that tamper with or truncate a bundle do it on a copy.
"""
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_one_line_error, invoke

import genctl
from genctl.errors import GenctlError
from genctl.serve.app import handle_generate

REFERENCE = ({"label": [0, 7]}, 3, 123)  # conditions, n, seed of the before/after comparison


def _samples(bundle) -> np.ndarray:
    conditions, n, seed = REFERENCE
    with genctl.load(bundle, backend="onnxruntime") as gen:
        return gen.generate(conditions, n=n, seed=seed).data


@pytest.fixture(scope="module")
def before(cvae_bundle):
    """Samples made before any bad input ran."""
    return _samples(cvae_bundle)


# ---------------------------------------------------------------- tampering, always on a copy

def _append_byte(rel):
    def tamper(copy: Path) -> None:
        with open(copy / rel, "ab") as f:
            f.write(b"x")
    return tamper


def _truncate(rel):
    def tamper(copy: Path) -> None:
        data = (copy / rel).read_bytes()
        (copy / rel).write_bytes(data[: len(data) // 2])
    return tamper


def _write(rel, text):
    def tamper(copy: Path) -> None:
        (copy / rel).write_text(text)
    return tamper


def _edit_manifest(edit):
    def tamper(copy: Path) -> None:
        manifest = json.loads((copy / "manifest.json").read_text())
        edit(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return tamper


def _set_graph_file(path):
    return _edit_manifest(lambda m: m["graphs"]["decode"].__setitem__("file", path))


def _drop(key):
    return _edit_manifest(lambda m: m.pop(key))


def _newer(m):
    m["schema_version"] = 99


def _garbage_rehashed(graph):
    """Replace a graph with garbage and fix its manifest hash to match: only loading can tell."""
    garbage = b"not an onnx graph " * 8

    def tamper(copy: Path) -> None:
        (copy / "graphs" / f"{graph}.onnx").write_bytes(garbage)
        _edit_manifest(lambda m: m["graphs"][graph].__setitem__("sha256", hashlib.sha256(garbage).hexdigest()))(copy)
    return tamper


def _images(fill):
    """A .npy of two images of the bundle's shape, written into the bundle copy (the test's tmp stays as listed)."""
    def tamper(copy: Path) -> None:
        shape = json.loads((copy / "manifest.json").read_text())["info"]["output"]["shape"]
        np.save(copy / "from.npy", fill(np.zeros((2, *shape), dtype=np.float32)))
    return tamper


# (id, command line with {bundle} {ckpt} {tmp} placeholders, fragments of the one error line, tamper of a bundle copy)
ROWS = [
    # generate
    ("gen-out-proc", "generate {bundle} --cond label=1 -n 2 --out /proc/nope/o.npy", ["/proc/nope/o.npy", "is not a writable directory"], None),
    ("gen-out-suffix", "generate {bundle} -n 2 --out {tmp}/g.gif", ["suffix '.gif'", "'.png'"], None),
    ("gen-out-dir", "generate {bundle} -n 2 --out {tmp}", ["got an existing directory", "expected a file path"], None),
    ("gen-n-huge", "generate {bundle} -n 1000000000", ["1000000000 x 10 condition rows", "at most 65536"], None),
    ("gen-n-zero", "generate {bundle} -n 0", ["got 0", "a positive integer"], None),
    ("gen-label-range", "generate {bundle} --cond label=12", ["Condition 'label'", "got 12", "0..9"], None),
    ("gen-label-name", "generate {bundle} --cond label=seven", ["got 'seven'"], None),
    ("gen-label-superscript", "generate {bundle} --cond label=¹", ["Condition 'label'", "got '¹'"], None),
    ("gen-cond-unknown", "generate {bundle} --cond colour=red", ["Condition 'colour'", "one of ['label']"], None),
    ("gen-cond-twice", "generate {bundle} --cond label=7 --cond label=3", ["--cond 'label'", "given twice", "label=1,2"], None),
    ("gen-temp-nan", "generate {bundle} --temperature nan", ["--temperature", "got NaN", "finite"], None),
    ("gen-temp-inf", "generate {bundle} --temperature inf", ["--temperature", "got inf", "[0.0, 10.0]"], None),
    ("gen-temp-huge", "generate {bundle} --temperature 1e308", ["got 1e+308", "[0.0, 10.0]"], None),
    ("gen-steps-wrong-family", "generate {bundle} --steps 5", ["Control 'steps'", "one of ['temperature']"], None),
    ("gen-prefix-image-model", "generate {bundle} --prefix Ma", ["Input 'prefix'", "cvae sampler does not take"], None),
    ("gen-seed-negative", "generate {bundle} --seed -1", ["--seed", "got -1", "[0, 2**63)"], None),
    ("gen-seed-huge", "generate {bundle} --seed 99999999999999999999999", ["--seed", "got 99999999999999999999999"], None),
    ("gen-from-label-alone", "generate {bundle} --from-label 3", ["--from-label", "--from IMAGE"], None),
    ("gen-from-missing", "generate {bundle} --from {tmp}/nope.png --from-label 1", ["no such file", "PNG/JPEG"], None),
    ("gen-from-nan", "generate {bundle} --from {bundle}/from.npy --from-label 1 --out {tmp}/g.npy",
     ["--from images", "NaN or infinite", "[-1, 1]"], _images(lambda a: a + np.nan)),
    ("gen-from-0-255", "generate {bundle} --from {bundle}/from.npy --from-label 1 --out {tmp}/g.npy",
     ["got pixels in [0, 127]", "expected pixels in [-1, 1]", "x / 127.5 - 1"], _images(lambda a: a + np.arange(a.size).reshape(a.shape) % 256)),
    ("gen-precision-unbuilt", "generate {bundle} --precision int8", ["Precision 'int8'", "no such variant", "genctl build"], None),
    ("gen-graph-tampered", "generate {bundle}", ["decode.onnx", "tampered or corrupted"], _append_byte("graphs/decode.onnx")),
    ("gen-graph-truncated", "generate {bundle}", ["encode.onnx", "tampered or corrupted"], _truncate("graphs/encode.onnx")),
    ("gen-weights-truncated", "generate {bundle} --backend torch", ["model.safetensors", "tampered or corrupted"], _truncate("source/model.safetensors")),
    ("gen-graph-garbage-rehashed", "generate {bundle}", ["decode.onnx", "does not load as an ONNX graph", "re-export"], _garbage_rehashed("decode")),
    ("build-graph-garbage-rehashed", "build {bundle} --target onnxruntime --precision int8", ["decode.onnx", "does not load as an ONNX graph"],
     _garbage_rehashed("decode")),
    ("gen-manifest-escape", "generate {bundle}", ["'../../../etc/passwd'", "inside the bundle"], _set_graph_file("../../../etc/passwd")),
    ("gen-manifest-graphs-list", "generate {bundle}", ["Bundle manifest", "malformed field", "schema"], _edit_manifest(lambda m: m.__setitem__("graphs", []))),
    ("gen-manifest-absolute", "generate {bundle}", ["'/etc/passwd'", "inside the bundle"], _set_graph_file("/etc/passwd")),
    # train
    ("train-family", "train vqgan --out {tmp}/ck", ["Family 'vqgan'", "expected one of"], None),
    ("train-dataset-kind", "train cvae --dataset names --out {tmp}/ck", ["got a text dataset", "image dataset"], None),
    ("train-epochs-zero", "train cvae --dataset digits --epochs 0 --out {tmp}/ck", ["--epochs", "got 0", "1..10000"], None),
    ("train-epochs-huge", "train cvae --dataset digits --epochs 99999999999 --out {tmp}/ck", ["got 99999999999", "1..10000"], None),
    ("train-seed-negative", "train cvae --dataset digits --seed -3 --out {tmp}/ck", ["--seed", "got -3"], None),
    ("train-out-proc", "train cvae --dataset digits --epochs 1 --out /proc/nope/ck", ["Output checkpoint", "is not a writable directory"], None),
    ("train-out-under-file", "train cvae --dataset digits --out {tmp}/file/ck", ["is not a writable directory (not a directory)"], None),
    # export
    ("export-no-checkpoint", "export {tmp}/nope --out {tmp}/bd", ["Checkpoint", "no config.json", "genctl train"], None),
    ("export-bundle-as-checkpoint", "export {bundle} --out {tmp}/bd", ["Checkpoint", "a folder written by 'genctl train'"], None),
    ("export-out-proc", "export {ckpt} --out /proc/nope/bd", ["Output bundle", "is not a writable directory"], None),
    ("export-out-exists", "export {ckpt} --out {tmp}/file", ["got an existing path", "--force"], None),
    ("export-out-is-checkpoint", "export {ckpt} --out {ckpt} --force", ["--out", "got the checkpoint folder", "apart from"], None),
    # build
    ("build-target", "build {bundle} --target cuda", ["--target 'cuda'", "one of ['onnxruntime'"], None),
    ("build-precision", "build {bundle} --precision int4", ["--precision 'int4'", "one of ['fp32'"], None),
    ("build-batch-zero", "build {bundle} --target tensorrt-rtx --precision fp32 --batch 0:1:2", ["--batch", "got min 0", "at least 1"], None),
    ("build-batch-words", "build {bundle} --target tensorrt-rtx --precision fp32 --batch a:b:c", ["got 'a:b:c'", "MIN:OPT:MAX"], None),
    ("build-control-negative", "build {bundle} --control-samples -5", ["--control-samples", "got -5", "0..10000"], None),
    ("build-keep-unknown", "build {bundle} --keep-fp32 nope", ["--keep-fp32 'nope'", "one of ['decode', 'encode']"], None),
    ("build-tampered", "build {bundle}", ["decode.onnx", "tampered or corrupted"], _append_byte("graphs/decode.onnx")),
    # bench
    ("bench-batch-zero", "bench {bundle} --batch-sizes 0", ["--batch-sizes", "got '0'", "positive integers"], None),
    ("bench-batch-word", "bench {bundle} --batch-sizes 1,x", ["got '1,x'"], None),
    ("bench-batch-huge", "bench {bundle} --batch-sizes 99999999999", ["99999999999", "at most 65536"], None),
    ("bench-iters-zero", "bench {bundle} --iters 0", ["--iters", "got 0", "1..1000000"], None),
    ("bench-backend-name", "bench {bundle} --backends torch,tvm", ["Backend 'tvm'", "one of ["], None),
    ("bench-json-suffix", "bench {bundle} --json {tmp}/b.csv", ["suffix '.csv'", "['.json']"], None),
    ("bench-json-proc", "bench {bundle} --json /proc/nope/b.json", ["Output bench JSON", "is not a writable directory"], None),
    ("bench-control-wrong-family", "bench {bundle} --guidance-scale 3", ["Control 'guidance_scale'", "one of ['temperature']"], None),
    ("bench-manifest-newer", "bench {bundle}", ["schema_version 99", "upgrade genctl"], _edit_manifest(_newer)),
    # eval
    ("eval-n-zero", "eval {bundle} -n 0", ["-n", "got 0", "1..65536"], None),
    ("eval-n-huge", "eval {bundle} -n 99999999999", ["got 99999999999", "1..65536"], None),
    ("eval-scales-word", "eval {bundle} --guidance-scales 1,x", ["--guidance-scales", "got '1,x'"], None),
    ("eval-steps-wrong-family", "eval {bundle} --steps 10", ["Control 'steps'", "one of ['temperature']"], None),
    ("eval-json-dir", "eval {bundle} --json {tmp}", ["Output eval JSON", "got an existing directory"], None),
    ("eval-json-proc", "eval {bundle} --json /proc/nope/e.json", ["Output eval JSON", "is not a writable directory"], None),
    # quickstart
    ("quickstart-out-proc", "quickstart --dataset digits --out /proc/nope/q", ["Output folder '/proc/nope/q'", "not a writable directory"], None),
    ("quickstart-epochs-zero", "quickstart --dataset digits --epochs 0 --out {tmp}/q", ["--epochs", "got 0"], None),
    # inspect
    ("inspect-missing", "inspect {tmp}/nope", ["got no such directory", "genctl export"], None),
    ("inspect-manifest-truncated", "inspect {bundle}", ["invalid JSON", "re-export"], _truncate("manifest.json")),
    ("inspect-manifest-not-object", "inspect {bundle}", ["got list", "a JSON object"], _write("manifest.json", "[]")),
    ("inspect-manifest-field-missing", "inspect {bundle}", ["missing or malformed field", "'conditions'"], _drop("conditions")),
]


def _command(line: str, bundle: Path, ckpt: Path, tmp: Path) -> list[str]:
    return [part.format(bundle=bundle, ckpt=ckpt, tmp=tmp) for part in line.split()]


@pytest.mark.parametrize("line, fragments, tamper", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_fails_in_one_line(line, fragments, tamper, cvae_bundle, cvae_checkpoint, tmp_path, before, copy_bundle):
    (tmp_path / "file").write_text("a file, not a folder")
    bundle = cvae_bundle
    if tamper is not None:  # never the shared bundle
        bundle = copy_bundle(cvae_bundle, "copy")
        tamper(bundle)
    listing = sorted(p.name for p in tmp_path.iterdir())
    res = invoke(*_command(line, bundle, cvae_checkpoint, tmp_path))
    assert_one_line_error(res, *fragments)
    assert " | got " in res.output and " | expected " in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written, not even a temp file
    np.testing.assert_array_equal(_samples(cvae_bundle), before)  # the bundle still loads and gives the same samples


# Wrong types and unknown options are refused by the command line parser itself (exit 2, as click does),
# in one line too rather than click's usage box.
USAGE_ROWS = [
    ("generate {bundle} -n abc", ["Invalid value for '-n'", "valid integer"]),
    ("generate {bundle} --precision int4", ["Invalid value for '--precision'", "'int4' is not one of"]),
    ("bench {bundle} --iters 1.5", ["Invalid value for '--iters'", "valid integer"]),
    ("train cvae --bogus 1", ["No such option: --bogus"]),
    ("inspect", ["Missing argument 'bundle'"]),
]


@pytest.mark.parametrize("line, fragments", USAGE_ROWS, ids=[r[0].split()[0] + "-" + str(i) for i, r in enumerate(USAGE_ROWS)])
def test_wrong_type_or_option_is_one_line(line, fragments, cvae_bundle, cvae_checkpoint, tmp_path):
    res = invoke(*_command(line, cvae_bundle, cvae_checkpoint, tmp_path))
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_battery_covers_every_command():
    commands = {row[1].split()[0] for row in ROWS}
    assert commands >= {"train", "export", "build", "generate", "bench", "eval", "inspect"}
    assert len(ROWS) + len(USAGE_ROWS) + len(SERVE_ROWS) >= 30


# ---------------------------------------------------------------- before the work, not after

def test_unwritable_out_fails_before_generating(cvae_bundle):
    res = invoke("generate", cvae_bundle, "--cond", "label=1", "-n", 2, "--out", "/proc/nope/o.npy")
    assert_one_line_error(res, "'/proc/nope/o.npy'", "got '/proc' is not a writable directory")
    assert "generated" not in res.output


def test_bad_train_out_fails_before_training(tmp_path):
    res = invoke("train", "cvae", "--dataset", "digits", "--epochs", 1, "--out", "/proc/nope/ck")
    assert_one_line_error(res, "Output checkpoint '/proc/nope/ck'", "is not a writable directory")
    assert "trained" not in res.output and not Path("/proc/nope").exists()


def test_library_checks_too(cvae_bundle, tmp_path):
    """The Python API gets the same up-front checks as the CLI."""
    from genctl.training.train import train

    with pytest.raises(GenctlError, match=r"Output checkpoint '/proc/x/ck' \| got '/proc' is not a writable directory"):
        train("cvae", "digits", "/proc/x/ck", epochs=1)
    with genctl.load(cvae_bundle, backend="onnxruntime") as gen:
        with pytest.raises(GenctlError, match=r"Control --temperature \| got 'hot' \| expected a float"):
            gen.generate({"label": 1}, n=1, temperature="hot")


# ---------------------------------------------------------------- a write that fails anyway

def _file_size_limit(limit: int):
    def apply() -> None:  # in the child only: writes past ``limit`` bytes fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _genctl(*args, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "genctl.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, preexec_fn=_file_size_limit(limit))


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # a progress bar may come first
    assert lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1, proc.stderr
    return lines[-1]


def test_failed_sample_write_is_one_line_and_leaves_nothing(cvae_bundle, tmp_path):
    proc = _genctl("generate", cvae_bundle, "-n", 16, "--out", tmp_path / "s.npy", limit=4096)
    line = _one_error_line(proc)
    assert f"Writing samples '{tmp_path / 's.npy'}' | got " in line and "expected a writable location with free space" in line
    assert list(tmp_path.iterdir()) == []  # no partial file, no temp file


def test_failed_checkpoint_write_leaves_no_checkpoint(tmp_path):
    proc = _genctl("train", "cvae", "--dataset", "digits", "--epochs", 1, "--out", tmp_path / "ck", limit=4096)
    line = _one_error_line(proc)
    assert f"Writing checkpoint '{tmp_path / 'ck'}' | got File too large" in line
    assert list(tmp_path.iterdir()) == []  # no half checkpoint, no temp folder


# ---------------------------------------------------------------- serve's request body (handle_generate)
# Kept apart so they are easy to retarget when the server moves to another app.

SERVE_ROWS = [
    ({"n": "lots"}, ["'n'", "got 'lots'", "valid integer"]),
    ({"n": 10**9}, ["'n'", "got 1000000000", "[1, 1024]"]),
    ({"conditions": {"label": 99}}, ["Condition 'label'", "got 99"]),
    ({"controls": {"temperature": float("nan")}}, ["Request field 'controls.temperature'", "got NaN"]),
    ({"controls": {"temperature": "hot"}}, ["Request field 'controls.temperature'", "got 'hot'", "expected a float"]),
    ({"controls": {"steps": 3}}, ["Request field 'controls.steps'", "one of ['temperature']"]),
    ({"seed": -1}, ["Request field 'seed'", "got -1"]),
    ({"seed": -5}, ["Request field 'seed' | got -5 | "]),
]


@pytest.fixture(scope="module")
def serving(cvae_bundle):
    with genctl.load(cvae_bundle, backend="onnxruntime") as gen:
        yield gen


@pytest.mark.parametrize("body, fragments", SERVE_ROWS, ids=[str(i) for i in range(len(SERVE_ROWS))])
def test_bad_serve_body_is_one_line(serving, body, fragments, cvae_bundle, before):
    body = {"conditions": {"label": 1}, **body}
    with pytest.raises(GenctlError) as info:
        handle_generate(serving, body)
    message = str(info.value)
    assert "\n" not in message and " | got " in message and " | expected " in message, message
    for fragment in fragments:
        assert fragment in message, message
    conditions, n, seed = REFERENCE
    np.testing.assert_array_equal(serving.generate(conditions, n=n, seed=seed).data, before)
