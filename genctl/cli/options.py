"""Options several commands share, declared once; their choices and help come from the library.

- ``--backend``: the backend registry (``genctl.runtime.backends.BACKENDS``) and each backend's
  ``+OPTION`` variants (``BACKEND_OPTIONS``), checked by the library's own ``check_backend_name``,
  so the command line takes exactly the names ``open_backend`` takes, with its one-line error.
- ``--precision``: the graph variants a bundle can hold (``genctl.bundle.PRECISIONS``).
- the sampling controls (``--temperature``, ``--top-k``, ``--steps`` ...): each sampler's own
  ``Control`` (type and ``help``, "Text: ..." per sampler that has it). ``None``, the default, means
  the bundle's default.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from genctl.bundle import PRECISIONS
from genctl.cli.common import fail
from genctl.errors import GenctlError
from genctl.runtime.backends import BACKEND_OPTIONS, BACKENDS, check_backend_name
from genctl.runtime.samplers import SAMPLERS, sampler_class

# ---------------------------------------------------------------- backends and graph variants


def backend_choices() -> str:
    """``auto, torch, ...; +OPTION: torch +cpu +cuda; onnxruntime +iobinding ...`` from the registries."""
    options = "; ".join(f"{name} {' '.join('+' + o for o in opts)}" for name, opts in BACKEND_OPTIONS.items() if opts)
    return f"{', '.join(['auto', *BACKENDS])}; variants NAME+OPTION: {options}"


def check_backend(value: str) -> str:
    """Option callback: the library's check of ``NAME+OPTION...``, as its one-line error (exit 1)."""
    try:
        check_backend_name(value)
    except GenctlError as exc:
        fail(str(exc))
    return value


Precision = Enum("Precision", [(p, p) for p in PRECISIONS], type=str)  # typer shows and checks the choices

BackendOption = Annotated[str, typer.Option(callback=check_backend,
                                            help=f"Backend that runs the graphs: {backend_choices()}.")]
PrecisionOption = Annotated[Precision, typer.Option(help="Graph variant (fp32 = the exported graphs; the others from 'genctl build').")]
Seed = Annotated[int, typer.Option(help="Seed of all sampling noise: same seed, same samples on every backend.")]

# ---------------------------------------------------------------- sampling controls


def _controls() -> dict[str, list[tuple[str, Any]]]:
    """Control name -> [(sampler label, Control)] over every registered sampler, in registry order."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for kind in SAMPLERS:
        cls = sampler_class(kind)
        for control in cls.controls:
            found.setdefault(control.name, []).append((cls.label or kind, control))
    return found


CONTROLS = _controls()


def control_option(name: str) -> Any:
    """``Annotated[Optional[TYPE], typer.Option(...)]`` for the sampling control ``name``."""
    entries = CONTROLS[name]
    types = {control.type for _, control in entries}
    if len(types) != 1:  # a bug in the samplers, not the user's: one option cannot take two types
        raise TypeError(f"sampling control '{name}' has several types across samplers: {sorted(t.__name__ for t in types)}")
    help_text = " ".join(f"{label}: {control.help}." for label, control in entries)
    return Annotated[Optional[types.pop()], typer.Option(help=help_text, show_default=False)]


Temperature = control_option("temperature")
TopK = control_option("top_k")
TopP = control_option("top_p")
MaxNewTokens = control_option("max_new_tokens")
Steps = control_option("steps")
GuidanceScale = control_option("guidance_scale")
Eta = control_option("eta")
SamplerChoice = control_option("sampler")
