"""User datasets for ``genctl train``: class folders, .npz, label,text files; one-line errors for bad data."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genctl.cli.main import app
from genctl.data import get_dataset
from genctl.data.user import load_user_dataset
from genctl.errors import GenctlError


def _folder(root, classes=("cat", "dog", "owl"), size=(12, 8), mode="RGB", per_class=6):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_reads_classes_channels_and_size(tmp_path):
    ds = get_dataset(str(_folder(tmp_path / "pets")))
    assert ds.label_names == ("cat", "dog", "owl") and ds.shape == (3, 8, 12) and ds.name == "user:pets"
    assert len(ds.y_train) + len(ds.y_test) == 18 and ds.x_train.min() >= -1 and ds.x_train.max() <= 1
    gray = load_user_dataset(_folder(tmp_path / "gray", mode="L"))
    assert gray.shape == (1, 8, 12)


@pytest.mark.parametrize("breakage, message", [
    (lambda root: [f.unlink() for f in (root / "dog").iterdir()], r"Class folder '.*dog' \| got no images"),
    (lambda root: Image.new("RGB", (16, 16)).save(root / "owl" / "big.png"), r"Image '.*big.png' \| got size 16x16 \| expected 12x8"),
    (lambda root: (root / "cat" / "broken.png").write_bytes(b"not a png"), r"Image '.*broken.png' \| got an unreadable file"),
])
def test_bad_image_folders_are_one_line_errors(tmp_path, breakage, message):
    root = _folder(tmp_path / "pets")
    breakage(root)
    with pytest.raises(GenctlError, match=message) as info:
        load_user_dataset(root)
    assert "\n" not in str(info.value)


def test_npz_layouts_names_and_attributes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "faces.npz", x=rng.integers(0, 255, (30, 8, 8, 3), dtype=np.uint8), y=np.arange(30) % 3,
             label_names=np.array(["a", "b", "c"]), attributes=rng.random((30, 2)))
    ds = load_user_dataset(tmp_path / "faces.npz")
    assert ds.shape == (3, 8, 8) and ds.label_names == ("a", "b", "c") and ds.attributes.shape == (30, 2)
    np.savez(tmp_path / "unit.npz", x=rng.random((20, 8, 8)).astype(np.float32), y=np.arange(20) % 2)
    ds = load_user_dataset(tmp_path / "unit.npz")
    assert ds.shape == (1, 8, 8) and ds.label_names == ("0", "1") and ds.x_train.min() >= -1
    np.savez(tmp_path / "gap.npz", x=rng.random((20, 8, 8)), y=np.where(np.arange(20) % 2, 2, 0))
    with pytest.raises(GenctlError, match=r"got no examples of class '1'"):
        load_user_dataset(tmp_path / "gap.npz")
    np.savez(tmp_path / "odd.npz", x=rng.random((20, 10, 10)), y=np.arange(20) % 2)
    with pytest.raises(GenctlError, match=r"image size \| got 10x10 \| expected height and width multiples of 4"):
        load_user_dataset(tmp_path / "odd.npz")


def test_text_csv_vocabulary_and_errors(tmp_path):
    (tmp_path / "words.csv").write_text("label,text\nen,hello\nen,world\nde,hallo\nde,\"welt, klein\"\n")
    ds = load_user_dataset(tmp_path / "words.csv")
    assert ds.label_names == ("de", "en") and ds.max_len == len("welt, klein") + 2
    assert set("helowrdatk, ") <= set(ds.vocab[3:]) and ds.vocab[:3] == ("<pad>", "<bos>", "<eos>")
    (tmp_path / "bad.txt").write_text("en,hello\njustaword\n")
    with pytest.raises(GenctlError, match=r"Dataset '.*bad.txt' line 2 \| got 'justaword' \| expected label,text"):
        load_user_dataset(tmp_path / "bad.txt")


def test_train_export_generate_on_a_user_folder_and_csv(tmp_path):
    runner = CliRunner()
    root = _folder(tmp_path / "pets", size=(8, 8), per_class=8)
    res = runner.invoke(app, ["train", "cvae", "--dataset", str(root), "--epochs", "1", "--out", str(tmp_path / "ck")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(tmp_path / "ck"), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["generate", str(tmp_path / "b"), "--cond", "label=owl", "-n", "2", "--out", str(tmp_path / "s.npy")])
    assert res.exit_code == 0 and np.load(tmp_path / "s.npy").shape == (2, 3, 8, 8), res.output
    (tmp_path / "w.txt").write_text("".join(f"{k},{w}\n" for k, w in [("en", "hello"), ("de", "hallo")] * 8))
    res = runner.invoke(app, ["train", "charrnn", "--dataset", str(tmp_path / "w.txt"), "--epochs", "1", "--out", str(tmp_path / "rnn")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "charrnn", "--dataset", str(root), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "got an image dataset" in res.output
