"""What every command shares: the one-line error handling and the consoles (shared options: ``options``)."""
from __future__ import annotations

import functools
import sys
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from genctl.errors import GenctlError

# Piped output (CI logs, files) gets a wide console so tables are not truncated at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)


def fail(message: str) -> None:
    # emoji=False: rich would turn ':b:' in a received value such as 'a:b:c' into an emoji
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(1)


try:  # typer >= 0.20 vendors click as typer._click; older typer raises click's own exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors


class OneLineUsageErrors(TyperGroup):
    """Usage errors (a value of the wrong type, an unknown option or choice) as one ``error:`` line
    like every other error, instead of click's usage box; exit code 2 as click gives them."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError:
            code = super().main(args, prog_name, complete_var, standalone_mode=True, **extra)  # prints help, exits
        except click_errors.UsageError as exc:
            err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True, emoji=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


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
