"""What every command shares: the one-line error handling, consoles, option types."""
from __future__ import annotations

import functools
import sys
from enum import Enum
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape

from genctl.errors import GenctlError

# Piped output (CI logs, files) gets a wide console so tables are not truncated at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)


class Backend(str, Enum):
    auto = "auto"
    torch = "torch"
    torch_compile = "torch-compile"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"
    tensorrt_rtx = "tensorrt-rtx"


class Precision(str, Enum):
    fp32 = "fp32"
    opt = "opt"
    fp16 = "fp16"
    int8 = "int8"


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def user_errors(fn: Callable) -> Callable:
    """Turn GenctlError (and I/O errors on user paths) into ``error: <one line>`` + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GenctlError as exc:
            fail(str(exc))
        except PermissionError as exc:
            fail(f"Path '{exc.filename}' | got permission denied | expected a writable/readable path")
        except KeyboardInterrupt:
            err_console.print("interrupted: nothing half-written was kept")
            sys.exit(130)

    return wrapper
