"""Keep library chatter (exporter logs, warnings) off a normal run; ``--verbose`` lets it through."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Iterator

VERBOSE = False
_NOISY = ("torch.onnx", "torch.export", "torch._dynamo", "torch._inductor", "torch.fx", "onnxscript", "onnx_ir", "onnxruntime")


def set_verbose(on: bool) -> None:
    global VERBOSE
    VERBOSE = on
    level = logging.INFO if on else logging.ERROR
    for name in _NOISY:
        logging.getLogger(name).setLevel(level)
    if not on:
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        warnings.filterwarnings("ignore")


@contextlib.contextmanager
def verbose_for(on: bool) -> Iterator[None]:
    """``set_verbose(True)`` for the block when ``on`` (the Python API's ``verbose=True``); restored after.

    ``on=False`` changes nothing (a CLI run with ``--verbose`` stays verbose).
    """
    global VERBOSE
    if not on or VERBOSE:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in _NOISY}
    VERBOSE = True
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield
    finally:
        VERBOSE = False
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence warnings, noisy loggers and stray prints inside the block unless verbose.

    What was printed is kept in the yielded buffer so an error can still show it.
    """
    buf = io.StringIO()
    if VERBOSE:
        yield buf
        return
    saved = {name: logging.getLogger(name).level for name in _NOISY}
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:  # stderr too: the dynamo exporter prints the traced graph there when it fails
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
