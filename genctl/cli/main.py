"""The genctl command line: one thin module per command, joined here."""
from __future__ import annotations

from typing import Annotated

import typer

from genctl import __version__
from genctl.cli import bench, build, doctor, export, export_triton, generate, inspect, loadtest, quickstart, serve, train, tune
from genctl.cli import eval as eval_cmd
from genctl.cli.common import OneLineUsageErrors

app = typer.Typer(name="genctl", cls=OneLineUsageErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="Controlled generative models: train → export (ONNX, parity-checked) → build → generate · bench · eval · tune.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"genctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs and warnings.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    from genctl.logs import set_verbose

    set_verbose(verbose)


app.command()(quickstart.quickstart)
app.command()(train.train)
app.command()(export.export)
app.command()(inspect.inspect)
app.command()(generate.generate)
app.command()(bench.bench)
app.command("eval")(eval_cmd.evaluate)
app.command()(doctor.doctor)
app.command()(build.build)
app.command()(tune.tune)
app.command()(serve.serve)
app.command()(loadtest.loadtest)
app.command("export-triton")(export_triton.export_triton)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
