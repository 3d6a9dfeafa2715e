"""Captions for digit images: measured attributes, prompt phrasings, and user ``captions.csv`` files.

Text prompts ("a bold 7 leaning left") steer generation only if the training captions describe
what is really in each image. The shipped digit datasets have labels but no captions, so we
*measure* two attributes on every image and caption from the measurements:

- **thickness** — :func:`ink`, the mean ink per image (pixels mapped to [0, 1]); thicker strokes put
  more ink on a fixed canvas. It is a proxy: a larger digit also has more ink, which is fine for
  "bold" as a viewer sees it.
- **slant** — :func:`slant`, the shear ``-mu11 / mu02`` of the ink distribution (horizontal pixels
  per vertical pixel; positive = the top leans right).

Each is cut into per-class terciles (:func:`attribute_bins`) because a "bold 1" has far less ink
than a "bold 8": thresholds are per digit. The thresholds are a JSON-able dict, so a bundle can
store them and eval can measure generated images against what a prompt asked for
(:func:`apply_bins`).

Phrasings come in two disjoint template sets: TRAIN templates for training captions and HELD_OUT
templates for evaluation prompts (:func:`eval_prompts`), so eval measures whether the model follows
*new* sentences, not memorised strings. Numpy only: the runtime and eval import this without torch.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from genctl.errors import GenctlError

THICKNESS = ("thin", "regular", "bold")
SLANT = ("left", "upright", "right")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICK_WORDS = (("thin", "light", "fine"), ("regular", "medium", "normal"), ("bold", "thick", "heavy"))
SLANT_WORDS = (("leaning left", "slanted left", "tilted left"), ("upright", "straight", "vertical"),
               ("leaning right", "slanted right", "tilted right"))

# Templates use {digit}, {thick}, {slant}. A template set is keyed by which attributes it names, so
# a caption that omits one ("a 7") still reads naturally. TRAIN and HELD_OUT share no template
# (checked by the tests); they differ in structure and word order, not only in a word or two.
TRAIN: dict[tuple[bool, bool], tuple[str, ...]] = {
    (True, True): (
        "a {thick} {digit} {slant}",
        "the number {digit}, {thick} strokes, {slant}",
        "a {thick} digit {digit}, {slant}",
        "handwritten {digit} in {thick} strokes, {slant}",
        "a {digit} written in {thick} ink, {slant}",
        "{thick} {digit}, {slant}",
        "the digit {digit} drawn {thick} and {slant}",
        "a {slant} {digit} with {thick} lines",
        "number {digit}: {thick}, {slant}",
        "an image of a {thick} {digit} that is {slant}",
        "a {digit}, {slant}, with {thick} strokes",
        "write {digit} {thick} and {slant}",
    ),
    (True, False): ("a {thick} {digit}", "the number {digit} in {thick} strokes", "{thick} digit {digit}"),
    (False, True): ("a {digit} {slant}", "the digit {digit}, {slant}", "number {digit} written {slant}"),
    (False, False): ("a {digit}", "the number {digit}", "digit {digit}", "a handwritten {digit}", "{digit}"),
}
HELD_OUT: dict[tuple[bool, bool], tuple[str, ...]] = {
    (True, True): (
        "{slant}, {thick}-stroked digit {digit}",
        "please draw {digit} using {thick} pen strokes, {slant}",
        "{digit} ({thick}, {slant})",
        "a picture of the numeral {digit}: {slant} and {thick}",
        "{thick}-lined {digit} that looks {slant}",
        "show me {digit}; make it {thick} and {slant}",
    ),
    (True, False): ("{thick}-stroked digit {digit}",),
    (False, True): ("{slant} numeral {digit}",),
    (False, False): ("show me {digit}",),
}

CSV_COLUMNS = ("file", "caption")


# --- measurements ---------------------------------------------------------------------------------
def _ink_map(images: np.ndarray) -> np.ndarray:
    """(N, H, W) ink in [0, 1] from (N, 1, H, W) or (N, H, W) pixels in [-1, 1] (the datasets' range)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise GenctlError("Images for captions", got=f"shape {x.shape}", expected="(N, 1, H, W) grayscale")
        x = x[:, 0]
    if x.ndim != 3:
        raise GenctlError("Images for captions", got=f"shape {x.shape}", expected="(N, 1, H, W) or (N, H, W)")
    return np.clip((x + 1.0) * 0.5, 0.0, 1.0)


def ink(images: np.ndarray) -> np.ndarray:
    """Stroke-thickness proxy: mean ink per image, pixels mapped from [-1, 1] to [0, 1]. Shape (N,)."""
    return _ink_map(images).mean(axis=(1, 2)).astype(np.float64)


def slant(images: np.ndarray) -> np.ndarray:
    """Slant per image: the shear ``-mu11 / mu02`` of the ink distribution. Shape (N,).

    x grows to the right and y downward (row index), so a digit whose top leans right has x
    *decreasing* as y grows: mu11 < 0. The sign is flipped so that positive = leaning right.
    The value is horizontal pixels per vertical pixel (tan of the angle from vertical); a blank
    image (no vertical spread) gets 0.
    """
    w = _ink_map(images).astype(np.float64)
    n, h, wd = w.shape
    ys, xs = np.arange(h, dtype=np.float64), np.arange(wd, dtype=np.float64)
    mass = w.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    row, col = w.sum(axis=2), w.sum(axis=1)  # (N, H), (N, W) marginals: cheaper than full grids
    ybar, xbar = row @ ys / safe, col @ xs / safe
    mu02 = (row * (ys[None] - ybar[:, None]) ** 2).sum(axis=1)
    mu11 = np.einsum("nhw,nh,nw->n", w, ys[None] - ybar[:, None], xs[None] - xbar[:, None])
    return np.where(mu02 > 1e-9, -mu11 / np.where(mu02 > 1e-9, mu02, 1.0), 0.0)


# --- per-class terciles ---------------------------------------------------------------------------
def attribute_bins(labels: np.ndarray, ink_values: np.ndarray, slant_values: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-class terciles: ``(thickness_idx, slant_idx, thresholds)``.

    ``thickness_idx`` indexes THICKNESS (thin, regular, bold), ``slant_idx`` indexes SLANT (left,
    upright, right). ``thresholds`` is JSON-able: ``{"ink": {"7": [lo, hi]}, "slant": {...}}`` with
    the 1/3 and 2/3 quantiles of each class, to store in a bundle and reuse with :func:`apply_bins`.
    """
    labels = np.asarray(labels).astype(np.int64)
    thresholds: dict = {"ink": {}, "slant": {}, "measure": {
        "ink": "mean ink per image, pixels mapped to [0, 1]",
        "slant": "-mu11/mu02 of the ink (x right, y down); positive = top leans right"}}
    for c in np.unique(labels):
        sel = labels == c
        for key, values in (("ink", ink_values), ("slant", slant_values)):
            lo, hi = np.quantile(np.asarray(values, dtype=np.float64)[sel], [1 / 3, 2 / 3])
            thresholds[key][str(int(c))] = [float(lo), float(hi)]
    thick_idx, slant_idx = apply_bins(labels, ink_values, slant_values, thresholds)
    return thick_idx, slant_idx, thresholds


def apply_bins(labels: np.ndarray, ink_values: np.ndarray, slant_values: np.ndarray,
               thresholds: dict) -> tuple[np.ndarray, np.ndarray]:
    """Bin measurements with stored thresholds: ``(thickness_idx, slant_idx)``, each in {0, 1, 2}.

    A class missing from ``thresholds`` is a one-line error (thresholds come from another dataset).
    """
    labels = np.asarray(labels).astype(np.int64)
    out = []
    for key, values in (("ink", ink_values), ("slant", slant_values)):
        values = np.asarray(values, dtype=np.float64)
        idx = np.zeros(len(labels), dtype=np.int64)
        for c in np.unique(labels):
            cuts = thresholds[key].get(str(int(c)))
            if cuts is None:
                raise GenctlError(f"Attribute thresholds for class {int(c)}", got="none stored",
                                  expected=f"one of classes {sorted(thresholds[key], key=int)}")
            sel = labels == c
            idx[sel] = np.digitize(values[sel], cuts)  # < lo -> 0, [lo, hi) -> 1, >= hi -> 2
        out.append(idx)
    return out[0], out[1]


# --- captions -------------------------------------------------------------------------------------
def _digit_text(label: int, rng: np.random.Generator) -> str:
    """The digit as a numeral or a word, half and half: prompts say "7" and "seven"."""
    return str(label) if rng.random() < 0.5 else DIGIT_WORDS[label]


def caption(label: int, thick_idx: int | None, slant_idx: int | None, rng: np.random.Generator,
            held_out: bool = False, omit: float = 0.0) -> str:
    """One caption for a digit with the given attribute bins, a template and synonyms drawn from ``rng``.

    ``thick_idx``/``slant_idx`` of None omit that attribute; ``omit`` is the probability of dropping
    each attribute anyway (training uses ~0.15 so "a 7" and "a bold 7" are seen prompts too).
    """
    label = int(label)
    if not 0 <= label < 10:
        raise GenctlError("Caption digit", got=label, expected="0..9")
    thick = thick_idx if thick_idx is not None and rng.random() >= omit else None
    slanted = slant_idx if slant_idx is not None and rng.random() >= omit else None
    templates = (HELD_OUT if held_out else TRAIN)[(thick is not None, slanted is not None)]
    template = templates[rng.integers(len(templates))]
    return _fill(template, _digit_text(label, rng), _pick(THICK_WORDS, thick, rng), _pick(SLANT_WORDS, slanted, rng))


_A_BEFORE_VOWEL = re.compile(r"\ba (?=(?!one\b)[aeiou8])")


def _fill(template: str, digit: str, thick: str, slanted: str) -> str:
    """Format a template; "a eight" / "a upright 7" become "an ..." so captions read as people write."""
    return _A_BEFORE_VOWEL.sub("an ", template.format(digit=digit, thick=thick, slant=slanted))


def _pick(words: tuple[tuple[str, ...], ...], idx: int | None, rng: np.random.Generator) -> str:
    return "" if idx is None else words[int(idx)][rng.integers(len(words[int(idx)]))]


def captions_for(labels: np.ndarray, thick_idx: np.ndarray, slant_idx: np.ndarray, seed: int,
                 held_out: bool = False, omit: float = 0.0) -> list[str]:
    """Captions for a whole dataset (one per image), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [caption(int(y), int(t), int(s), rng, held_out=held_out, omit=omit)
            for y, t, s in zip(labels, thick_idx, slant_idx)]


def eval_prompts(seed: int = 0) -> list[tuple[str, int, int, int]]:
    """``(prompt, label, thick_idx, slant_idx)`` for every digit x thickness x slant (90 prompts).

    Only HELD_OUT full templates, cycled so each is used about equally; synonyms and numeral/word
    drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    templates = HELD_OUT[(True, True)]
    out = []
    for i, (label, t, s) in enumerate((d, t, s) for d in range(10) for t in range(3) for s in range(3)):
        text = _fill(templates[i % len(templates)], _digit_text(label, rng), _pick(THICK_WORDS, t, rng),
                     _pick(SLANT_WORDS, s, rng))
        out.append((text, label, t, s))
    return out


# --- user captions --------------------------------------------------------------------------------
def read_captions_csv(path: str | Path) -> dict[str, str]:
    """``{file: caption}`` from a ``captions.csv`` with header ``file,caption`` (extra columns ignored).

    One-line errors name the file and line: unreadable file, invalid UTF-8, a missing column, an
    empty file name or caption, a file listed twice.
    """
    path = Path(path)
    text = _read_utf8(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise GenctlError(f"Captions file '{path}'", got=f"header {header}", expected="columns 'file,caption'",
                          fix=f"add the column(s) {missing} as the first line")
    fi, ci = header.index("file"), header.index("caption")
    captions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines (often a trailing one) are not entries
        name = row[fi].strip() if fi < len(row) else ""
        cap = row[ci].strip() if ci < len(row) else ""
        if not name:
            raise GenctlError(f"Captions file '{path}' line {line}", got="an empty file name", expected="file,caption")
        if not cap:
            raise GenctlError(f"Captions file '{path}' line {line}", got=f"an empty caption for '{name}'",
                              expected="a non-empty caption")
        if name in captions:
            raise GenctlError(f"Captions file '{path}' line {line}", got=f"'{name}' listed again (first on line {first_line[name]})",
                              expected="one caption per file")
        captions[name], first_line[name] = cap, line
    if not captions:
        raise GenctlError(f"Captions file '{path}'", got="no captions", expected="at least one file,caption line")
    return captions


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GenctlError(f"Captions file '{path}'", got=exc.strerror or type(exc).__name__, expected="a readable file") from None
    try:
        return data.decode("utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise GenctlError(f"Captions file '{path}' line {line}", got=f"invalid UTF-8 byte 0x{data[exc.start]:02x}",
                          expected="UTF-8 text", fix="re-save the file as UTF-8") from None
