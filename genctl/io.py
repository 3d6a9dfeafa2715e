"""Small filesystem helpers: atomic directories and files, hashes, safe relative paths."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from genctl.errors import GenctlError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable_parent(out: Path, what: str) -> None:
    """Fail early (before minutes of work) when ``out`` cannot be created."""
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise GenctlError(f"Output {what} '{out}'", got=f"'{probe}' is not a writable directory",
                          expected="a path inside a writable directory")


@contextlib.contextmanager
def atomic_dir(out: Path, *, overwrite: bool = False, what: str = "directory") -> Iterator[Path]:
    """Yield a temp dir beside ``out``; on success it replaces ``out`` in one rename.

    On any exception the temp dir is removed, so a crash or a failed parity check never leaves
    half a bundle or checkpoint behind, and an existing ``out`` is untouched.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise GenctlError(f"Output {what} '{out}'", got="an existing path", expected="a new path", fix="pass --force to replace it")
    check_writable_parent(out, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: object) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def inside(root: Path, rel: str, subject: str) -> Path:
    """``root/rel`` resolved, refusing absolute paths and ``..`` escapes from ``root``."""
    root = Path(root).resolve()
    target = (root / rel).resolve()
    if Path(rel).is_absolute() or (target != root and root not in target.parents):
        raise GenctlError(subject, got=repr(rel), expected="a relative path inside the bundle")
    return target
