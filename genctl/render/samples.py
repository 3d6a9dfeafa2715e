"""Writing samples: PNG grids (rows = conditions), raw .npy, text files; reading --from images."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from genctl.errors import GenctlError
from genctl.io import atomic_file, check_output_file
from genctl.runtime.samplers import Samples

SUFFIXES = {"image": (".png", ".npy"), "text": (".txt", ".json", ".npy"), "array": (".npy",)}


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → (N, H, W, C) uint8."""
    return (np.clip((images + 1.0) / 2.0, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


def grid_image(samples: Samples, cell: int = 56, label_width: int = 90) -> Image.Image:
    """One row per condition, ``n`` columns; small images are upscaled (nearest) to ``cell`` px.

    Row labels are wrapped into the label column (widened for long labels such as text prompts).
    """
    pixels = to_uint8(samples.data)
    rows, cols = len(samples.rows), samples.n
    h, w, c = pixels.shape[1:]
    scale = max(1, cell // max(h, w))
    ch, cw = h * scale, w * scale
    longest = max((len(r) for r in samples.rows), default=0)
    label_width = max(label_width, min(240, 6 * longest // 2 + 12)) if longest > 14 else label_width
    chars = max(8, (label_width - 8) // 6)  # PIL's default font: ~6 px per character
    lines_fit = max(1, ch // 11)
    grid = Image.new("RGB", (label_width + cols * (cw + 2), rows * (ch + 2)), "white")
    draw = ImageDraw.Draw(grid)
    for r in range(rows):
        lines = textwrap.wrap(samples.rows[r], chars)[:lines_fit] or [""]
        top = r * (ch + 2) + max(0, (ch - 11 * len(lines)) // 2)
        for i, line in enumerate(lines):
            draw.text((4, top + 11 * i), line, fill="black")
        for k in range(cols):
            tile = pixels[r * cols + k]
            img = Image.fromarray(tile[..., 0] if c == 1 else tile).convert("RGB").resize((cw, ch), Image.NEAREST)
            grid.paste(img, (label_width + k * (cw + 2), r * (ch + 2)))
    return grid


def check_out(out: Path, kind: str) -> None:
    """Refuse a bad --out before any work: a folder, the wrong suffix for the kind of sample, or unwritable."""
    allowed = SUFFIXES[kind]
    if Path(out).suffix.lower() not in allowed and not Path(out).is_dir():
        raise GenctlError(f"--out '{out}'", got=f"suffix '{Path(out).suffix}'", expected=f"one of {list(allowed)} for {kind} samples")
    check_output_file(Path(out), "file", allowed)


def write_samples(samples: Samples, out: Path) -> None:
    """Write by suffix; the file appears whole or not at all (temp file + rename, OSError → GenctlError)."""
    out = Path(out)
    check_out(out, samples.kind)
    with atomic_file(out, "samples") as tmp:
        _write(samples, tmp, out.suffix.lower())


def _write(samples: Samples, path: Path, suffix: str) -> None:
    if suffix == ".png":
        grid_image(samples).save(path, format="PNG")
    elif suffix == ".npy":
        with open(path, "wb") as f:
            np.save(f, samples.data)
    elif suffix == ".txt":
        path.write_text("\n".join(samples.texts) + "\n")
    else:
        records = [{"text": t, "condition": samples.rows[i // samples.n], "tokens": samples.data[i].tolist()}
                   for i, t in enumerate(samples.texts)]
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")


def read_images(path: Path, shape: list[int], note: Callable[[str], None] | None = None) -> np.ndarray:
    """A PNG/JPEG (one image) or .npy (N, C, H, W) in [-1, 1] → float32 (N, C, H, W) of ``shape``.

    An image of another size is resized (bilinear) and one of other channels converted; ``note`` is then
    called with one line saying so (``genctl generate`` prints it); the library itself prints nothing."""
    path = Path(path)
    if not path.is_file():
        raise GenctlError(f"--from '{path}'", got="no such file", expected="a PNG/JPEG image or a .npy array")
    c, h, w = shape
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        arr = arr[None] if arr.ndim == 3 else arr
        if arr.shape[1:] != (c, h, w):
            raise GenctlError(f"--from '{path}'", got=f"shape {arr.shape}", expected=f"(N, {c}, {h}, {w}) in [-1, 1]")
        return arr
    try:
        with Image.open(path) as src:
            size, mode = src.size, src.mode
            img = src.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
    except OSError:
        raise GenctlError(f"--from '{path}'", got="an unreadable image", expected="a PNG/JPEG image") from None
    changes = [f"resized {size[0]}x{size[1]} to {w}x{h}"] if size != (w, h) else []
    if mode not in (("L", "1", "LA", "I", "I;16") if c == 1 else ("RGB", "RGBA", "P")):
        changes.append(f"converted {mode} to {'grayscale' if c == 1 else 'RGB'}")
    if changes and note is not None:
        note(f"--from '{path}': {' and '.join(changes)} (the model's images are {w}x{h}, {c} channel{'' if c == 1 else 's'})")
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
    return arr[None].astype(np.float32)
