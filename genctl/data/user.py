"""User datasets for ``genctl train FAMILY --dataset PATH``: read from the user's files, sizes from the data.

- an image folder with one sub-folder per class (``root/cat/*.png``, ``root/dog/*.jpg``): the class
  names are the folder names (sorted); channels 1 if every image is grayscale, else 3; every image
  must have the same size; an optional ``captions.csv`` in the folder (header ``file,caption``, file
  paths relative to the folder such as ``cat/0.png``) gives images captions for ``textdiffusion``
  (``captions_train``/``captions_test``, aligned with the images; an image it does not list gets
  None, which textdiffusion refuses and the other families never read). A caption file that is
  malformed or lists a file that is not an image of a class folder is a one-line error for every family;
- an ``.npz`` with ``x`` (N, H, W), (N, C, H, W) or (N, H, W, C) — uint8 0..255 or floats in
  [0, 1] or [-1, 1] — and ``y`` (N,) integer labels; optional ``label_names`` (K,) strings and
  ``attributes`` (N, k) floats (kept on the dataset; genctl's shipped families train on the label);
- a ``.txt`` or ``.csv`` of ``label,text`` lines for the text families: the vocabulary is every
  character seen, the context the longest text. The condition is named by the header: a first line
  ``label,text`` (either suffix) or, in a ``.csv``, a first line whose label occurs on no other line
  (``language,word``) is a header and its first column names the condition (``language``); without
  one the condition is ``label``.

Each dataset records where it was read from (``source``, the resolved path) and the sha256 of its
content (``content_hash``), which go into the checkpoint's dataset info: ``genctl eval`` and the
build gate re-read the data from there and key their evaluator cache by the hash, so edited data
gets a new evaluator.

Every problem is a one-line error naming the file: an empty class, mixed image sizes, an unreadable
image, a malformed line. Entries of a class folder that are not images (a ``notes.txt``, a sub-folder;
hidden files such as ``.DS_Store`` aside) are skipped and listed in ``skipped_files``; the library
prints nothing, ``genctl train`` prints one note with their count (``dataset_notes``). The split is a seeded 10% test share, as for the shipped datasets.
"""
from __future__ import annotations

import csv
import functools
import hashlib
from pathlib import Path

import numpy as np

from genctl.data.images import ImageDataset
from genctl.data.names import TextDataset
from genctl.errors import GenctlError
from genctl.vocab import BOS, EOS, PAD, SPECIALS

RESERVED_INPUTS = frozenset({"token", "tokens", "hidden", "past_k", "past_v"})  # charrnn / chartransformer graph inputs
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEST_FRACTION = 0.1


def is_user_dataset(name: str) -> bool:
    """A ``--dataset`` value that names a path rather than a shipped dataset."""
    return "/" in name or "\\" in name or Path(name).suffix.lower() in (".npz", ".txt", ".csv") or Path(name).is_dir()


def load_user_dataset(path: str | Path):
    """An ImageDataset or TextDataset read from ``path`` (a class folder, .npz, .txt or .csv)."""
    path = Path(path)
    if not path.exists():
        raise GenctlError(f"Dataset '{path}'", got="no such file or folder",
                          expected="a folder of class sub-folders, an .npz with x and y, or a .txt/.csv of label,text lines")
    if path.is_dir():
        return _cached_folder(str(path.resolve()), _folder_stamp(path))
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _with_source(load_npz(path), path, _file_hash(path))
    if suffix in (".txt", ".csv"):
        return _with_source(load_text(path), path, _file_hash(path))
    raise GenctlError(f"Dataset '{path}'", got=f"suffix '{suffix}'", expected="a folder, .npz, .txt or .csv")


def _with_source(ds, path: Path, digest: str):
    ds.source, ds.content_hash = str(path.resolve()), digest
    return ds


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise GenctlError(f"Dataset '{path}'", got=f"an unreadable file ({type(exc).__name__})", expected="a readable file") from None


def _split_indices(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(len(y))
    n_test = max(1, int(len(y) * TEST_FRACTION)) if len(y) >= 10 else 0
    return order[n_test:], order[:n_test]


def _image_dataset(name: str, x: np.ndarray, y: np.ndarray, label_names: tuple[str, ...],
                   files: list[str] | None = None, captions: list[str | None] | None = None) -> ImageDataset:
    h, w = x.shape[2:]
    if h % 4 or w % 4 or min(h, w) < 8:
        # the cvae/cgan decoders upsample x2 twice, cflow squeezes, the diffusion UNet downsamples
        raise GenctlError(f"Dataset '{name.removeprefix('user:')}' image size", got=f"{h}x{w}",
                          expected="height and width multiples of 4, at least 8 (genctl's image families halve them twice)",
                          fix="resize or pad the images, e.g. to 16x16 or 28x28")
    train, test = _split_indices(y)
    if len(test) == 0:
        test = train[:1]  # tiny sets: the evaluator and tests still get one example
    ds = ImageDataset(name, x[train], y[train], x[test], y[test], label_names)
    if files is not None:
        ds.files_train, ds.files_test = [files[i] for i in train], [files[i] for i in test]
    if captions is not None:
        ds.captions_train, ds.captions_test = [captions[i] for i in train], [captions[i] for i in test]
    return ds


# ------------------------------------------------------------------------------------ image folder

CAPTIONS_FILE = "captions.csv"


@functools.lru_cache(maxsize=4)
def _cached_folder(root: str, stamp: tuple | None = None) -> ImageDataset:
    return load_image_folder(Path(root))  # stamp: an edited image or captions.csv is read again


def _folder_stamp(root: Path) -> tuple:
    """Name, size and mtime of every file a folder dataset reads: a change gives another cache key."""
    try:
        files = sorted(f for c in root.iterdir() if c.is_dir() and not c.name.startswith(".") for f in c.iterdir())
    except OSError:
        return ()
    return (*((f.name, f.parent.name, _stamp(f)) for f in files), _stamp(root / CAPTIONS_FILE))


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def load_image_folder(root: Path) -> ImageDataset:
    """``root/<class>/<image>``; pixels to [-1, 1], (N, C, H, W)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise GenctlError(f"Dataset folder '{root}'", got="no class sub-folders", expected="one sub-folder of images per class")
    files = {c.name: sorted(f for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()) for c in classes}
    skipped = sorted(f.relative_to(root).as_posix() for c in classes for f in c.iterdir()
                     if not f.name.startswith(".") and not (f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
    for name, items in files.items():
        if not items:
            raise GenctlError(f"Class folder '{root / name}'", got="no images",
                              expected=f"at least one {'/'.join(IMAGE_SUFFIXES)} file per class", fix="remove the empty folder")
    images = {f: _read_image(f) for items in files.values() for f in items}
    color = any(img.mode not in ("L", "1", "LA", "I", "I;16") for img in images.values())
    first = next(iter(images))
    for f, img in images.items():
        if img.size != images[first].size:
            raise GenctlError(f"Image '{f}'", got=f"size {img.size[0]}x{img.size[1]}",
                              expected=f"{images[first].size[0]}x{images[first].size[1]} like '{first}' (all images one size)",
                              fix="resize the images to one size")
    x = np.stack([_to_array(images[f], color) for items in files.values() for f in items])
    y = np.concatenate([np.full(len(items), k, dtype=np.int64) for k, items in enumerate(files.values())])
    rel = [f.relative_to(root).as_posix() for items in files.values() for f in items]
    captions = _folder_captions(root, rel) if (root / CAPTIONS_FILE).is_file() else None
    digest = hashlib.sha256()
    for f, name in zip((f for items in files.values() for f in items), rel):  # names and bytes of what was read
        digest.update(name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    if captions is not None:
        digest.update(b"captions\0" + (root / CAPTIONS_FILE).read_bytes())
    ds = _image_dataset(f"user:{root.name}", x, y, tuple(files), rel, captions)
    ds.skipped_files = skipped
    return _with_source(ds, root, digest.hexdigest())


def dataset_notes(ds) -> list[str]:
    """One-line notes on choices made while reading ``ds`` (``genctl train`` prints them; the library stays quiet)."""
    skipped = getattr(ds, "skipped_files", None) or []
    if not skipped:
        return []
    where = f" in '{ds.source}'" if getattr(ds, "source", None) else ""
    return [f"skipped {len(skipped)} non-image {'entry' if len(skipped) == 1 else 'entries'}{where} "
            f"(e.g. '{skipped[0]}'; images are {'/'.join(IMAGE_SUFFIXES)})"]


def _folder_captions(root: Path, rel: list[str]) -> list[str | None]:
    """Each image's caption from ``root/captions.csv`` (None where it has none), in ``rel``'s order."""
    from genctl.data.captions import read_captions_csv

    path = root / CAPTIONS_FILE
    listed = {_norm(name): " ".join(text.split()) for name, text in read_captions_csv(path).items()}
    known = set(rel)
    unknown = [name for name in listed if name not in known]
    if unknown:
        raise GenctlError(f"Captions file '{path}'", got=f"'{unknown[0]}', which is not an image of the folder"
                          + (f" ({len(unknown)} such files)" if len(unknown) > 1 else ""),
                          expected=f"file paths relative to '{root}', such as '{rel[0]}'",
                          fix="fix the path or remove the line")
    return [listed.get(name) for name in rel]


def _norm(name: str) -> str:
    """``./cat\\0.png`` -> ``cat/0.png``: captions.csv paths as the folder's relative POSIX paths."""
    from pathlib import PurePosixPath

    return PurePosixPath(name.replace("\\", "/")).as_posix().removeprefix("./")


def _read_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError) as exc:
        raise GenctlError(f"Image '{path}'", got=f"an unreadable file ({type(exc).__name__})", expected="a valid image",
                          fix="remove or replace the file") from None


def _to_array(img, color: bool) -> np.ndarray:
    arr = np.asarray(img.convert("RGB" if color else "L"), dtype=np.float32) / 127.5 - 1.0
    return arr.transpose(2, 0, 1) if color else arr[None]  # (C, H, W)


# ------------------------------------------------------------------------------------------ .npz

def load_npz(path: Path) -> ImageDataset:
    """``x`` + ``y`` (+ ``label_names``, ``attributes``); pixel range detected from dtype and values."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise GenctlError(f"Dataset '{path}'", got=f"an unreadable .npz ({type(exc).__name__})",
                          expected="np.savez(path, x=..., y=...) without object arrays") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise GenctlError(f"Dataset '{path}'", got=f"arrays {sorted(arrays)}", expected="arrays 'x' (images) and 'y' (labels)")
    x, y = _npz_images(path, arrays["x"]), arrays["y"]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise GenctlError(f"Dataset '{path}' y", got=f"{y.dtype} {y.shape}", expected=f"({len(x)},) non-negative integer labels")
    names = tuple(str(s) for s in arrays["label_names"]) if "label_names" in arrays else tuple(str(i) for i in range(int(y.max()) + 1))
    empty = [names[k] for k in range(len(names)) if not np.any(y == k)]
    if empty or y.max() >= len(names):
        raise GenctlError(f"Dataset '{path}' y", got=f"no examples of class {empty[0]!r}" if empty else f"label {int(y.max())}",
                          expected=f"every class 0..{len(names) - 1} present ({len(names)} label names)")
    ds = _image_dataset(f"user:{path.stem}", x, y.astype(np.int64), names)
    if "attributes" in arrays:
        ds.attributes = np.asarray(arrays["attributes"], dtype=np.float32)
    return ds


def _npz_images(path: Path, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise GenctlError(f"Dataset '{path}' x", got=f"shape {x.shape}", expected="(N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        return x * 2.0 - 1.0
    if lo >= -1.0 and hi <= 1.0:
        return x
    raise GenctlError(f"Dataset '{path}' x", got=f"values in [{lo:g}, {hi:g}]", expected="uint8, or floats in [0, 1] or [-1, 1]")


# ------------------------------------------------------------------------------------------ text

def load_text(path: Path) -> TextDataset:
    """``label,text`` lines; labels sorted by name, vocabulary = every character seen, condition named by the header."""
    pairs, condition = _read_pairs(path)
    label_names = tuple(sorted({label for label, _ in pairs}))
    chars = sorted({c for _, text in pairs for c in text})
    vocab = (*SPECIALS, *chars)
    index = {c: i for i, c in enumerate(vocab)}
    max_len = max(len(text) for _, text in pairs) + 2  # BOS ... EOS
    x = np.full((len(pairs), max_len), PAD, dtype=np.int64)
    for i, (_, text) in enumerate(pairs):
        ids = [BOS, *(index[c] for c in text), EOS]
        x[i, :len(ids)] = ids
    y = np.array([label_names.index(label) for label, _ in pairs], dtype=np.int64)
    train, test = _split_indices(y)
    test = test if len(test) else train[:1]
    texts = [text for _, text in pairs]
    return TextDataset(f"user:{path.stem}", [texts[i] for i in train], [texts[i] for i in test], x[train], y[train], x[test], y[test],
                       label_names, vocab, max_len, condition_name=condition)


def _read_pairs(path: Path) -> tuple[list[tuple[str, str]], str]:
    """The ``(label, text)`` pairs and the condition's name (the header's first column, else ``label``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenctlError(f"Dataset '{path}'", got=f"an unreadable file ({type(exc).__name__})", expected="UTF-8 text") from None
    pairs, numbers = [], []
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not ",".join(row[1:]).strip():
            raise GenctlError(f"Dataset '{path}' line {number}", got=repr(",".join(row))[:60], expected="label,text")
        pairs.append((row[0].strip(), ",".join(row[1:]).strip()))
        numbers.append(number)
    condition = "label"
    if pairs and _is_header(pairs, path):
        condition = pairs[0][0] if pairs[0][0].isidentifier() else "label"
        if condition in RESERVED_INPUTS:
            raise GenctlError(f"Dataset '{path}' header", got=f"condition name '{condition}'",
                              expected=f"a name other than the text families' graph inputs {sorted(RESERVED_INPUTS)}",
                              fix="rename the header's first column, e.g. 'language'")
        pairs = pairs[1:]
    if not pairs:
        raise GenctlError(f"Dataset '{path}'", got="no label,text lines", expected="at least one line per label")
    return pairs, condition


def _is_header(pairs: list[tuple[str, str]], path: Path) -> bool:
    """``label,text`` anywhere; in a .csv also a first line whose label no other line uses (``language,word``)."""
    first = pairs[0]
    if [first[0].lower(), first[1].lower()] == ["label", "text"]:
        return True
    return path.suffix.lower() == ".csv" and len(pairs) > 1 and all(label != first[0] for label, _ in pairs[1:])
