"""Small filesystem helpers: atomic directories and files, hashes, safe relative paths."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from genctl.errors import GenctlError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable_parent(out: Path, what: str) -> None:
    """Fail early (before minutes of work) when ``out`` cannot be created.

    The nearest existing ancestor must be a directory in which a file can really be created: it is
    probed with a temporary file, because ``os.access`` answers yes to root even for ``/proc``.
    """
    out = Path(out)
    probe = out.resolve().parent
    while not probe.exists():
        probe = probe.parent
    reason = None if probe.is_dir() else "not a directory"
    if reason is None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".genctl-probe-", dir=probe)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
    if reason is not None:
        raise GenctlError(f"Output {what} '{out}'", got=f"'{probe}' is not a writable directory ({reason})",
                          expected="a path inside a writable directory")


def check_output_file(out: Path, what: str, suffixes: Sequence[str] | None = None) -> Path:
    """Everything knowable about an output file before the work: not a folder, a known suffix, writable."""
    out = Path(out)
    if out.is_dir():
        raise GenctlError(f"Output {what} '{out}'", got="an existing directory", expected="a file path")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise GenctlError(f"Output {what} '{out}'", got=f"suffix '{out.suffix}'", expected=f"one of {list(suffixes)}")
    check_writable_parent(out, what)
    return out


def check_output_dir(out: Path, what: str, *, overwrite: bool = False) -> Path:
    """An output folder (checkpoint, bundle): new unless ``overwrite``, inside a writable directory."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise GenctlError(f"Output {what} '{out}'", got="an existing path", expected="a new path", fix="pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise GenctlError(f"Output {what} '{out}'", got="an existing file", expected="a folder path")
    check_writable_parent(out, what)
    return out


def write_error(out: Path, what: str, exc: OSError) -> GenctlError:
    """The one-line error for a write that failed anyway (disk full, permissions changed mid-run)."""
    where = f" on '{exc.filename}'" if exc.filename and Path(exc.filename).name != Path(out).name else ""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)
    return GenctlError(f"Writing {what} '{out}'", got=f"{reason}{where}",
                       expected="a writable location with free space", fix="nothing half-written was kept; free space or fix permissions and rerun")


@contextlib.contextmanager
def atomic_file(out: Path, what: str = "file") -> Iterator[Path]:
    """Yield a temp path beside ``out``; on success it becomes ``out`` in one rename.

    Any OSError while writing (disk full, permission changed mid-run) is a one-line GenctlError and
    the temp file is removed, so ``out`` is either whole or untouched.
    """
    out = Path(out)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise write_error(out, what, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str, what: str = "file") -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    with atomic_file(path, what) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(out: Path, *, overwrite: bool = False, what: str = "directory") -> Iterator[Path]:
    """Yield a temp dir beside ``out``; on success it replaces ``out`` in one rename.

    On any exception the temp dir is removed, so a crash or a failed parity check never leaves
    half a bundle or checkpoint behind, and an existing ``out`` is untouched.
    """
    out = check_output_dir(out, what, overwrite=overwrite)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:  # a write that failed anyway (disk full, permissions changed mid-run)
        raise write_error(out, what, exc) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: object, what: str = "file") -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n", what)


def inside(root: Path, rel: str, subject: str) -> Path:
    """``root/rel`` resolved, refusing absolute paths and ``..`` escapes from ``root``."""
    root = Path(root).resolve()
    target = (root / rel).resolve()
    if Path(rel).is_absolute() or (target != root and root not in target.parents):
        raise GenctlError(subject, got=repr(rel), expected="a relative path inside the bundle")
    return target
