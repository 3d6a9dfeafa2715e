"""The condition-kind protocol: one base class every kind implements, and the registry of kinds.

A *condition* is what a user asks a model for (a class, a number, a vector, a text prompt). Each
kind of condition is one class in one module of this package; subclassing ``ConditionKind`` with a
``kind`` name registers it, so the manifest, the parser, the exporter and the samplers reach every
kind through this protocol and never switch on types. The life of one value:

1. ``column(raw)``: a CLI / JSON value → one parsed value per grid row (``parse`` each; a bad value
   is a one-line ``ConditionError``); no value → ``default_column()``.
2. ``encode(values, run, cache)``: the *encode stage*, once per request between parsing and the
   graphs, for kinds that need an encoder graph (a text prompt → token states). Identity otherwise.
3. ``feeds(values)``: the graph input arrays, one row per value (``specs()`` declares them for export).

A kind also gives its null value for classifier-free guidance (``null``), its manifest entry
(``to_json`` / ``from_json``), a human description and an example value for help texts and errors.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from genctl.errors import ConditionError
from genctl.spec import TensorSpec

KINDS: dict[str, type[ConditionKind]] = {}  # manifest "kind" -> class; filled by subclassing

# The encode stage's view of a backend: run(graph_name, feeds) -> outputs (numpy arrays).
RunGraph = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class ConditionKind:
    """Base of every condition kind (frozen dataclasses with a ``name`` field)."""

    kind: ClassVar[str] = ""
    name: str
    encoder_graph: ClassVar[str | None] = None  # kinds with an encode stage name the bundle graph it runs
    takes_arrays: ClassVar[bool] = False  # accepts --cond-file NAME=FILE.npy (one row per array row)
    takes_prompts: ClassVar[bool] = False  # the target of --prompt / "prompt" (a text condition)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            KINDS[cls.kind] = cls

    # ---- parse and validate -------------------------------------------------------------------
    def parse(self, value: object) -> Any:
        """One value (CLI text or JSON) → the parsed value; ``ConditionError`` in one line otherwise."""
        raise NotImplementedError

    def column(self, raw: Any) -> list:
        """A request's value → one parsed value per grid row (a list, or comma-separated text)."""
        if raw is None:
            return self.default_column()
        items = raw if isinstance(raw, (list, tuple, np.ndarray)) else str(raw).split(",")
        return [self.parse(v) for v in items]

    def default_column(self) -> list:
        """Rows for a request that does not name this condition."""
        return [self.default()]

    def default(self) -> Any:
        raise NotImplementedError

    def null(self) -> Any:
        """The unconditional value for classifier-free guidance, where the kind has one (else ``None``)."""
        return None

    def check_null(self, value: Any) -> None:
        """A declared null value (bring-your-own diffusion) must be a value the graph can take."""
        self.parse(value)

    def parity_values(self) -> list | None:
        """Values the export's loop-parity check generates for (``None``: the default rows)."""
        return None

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names for class-valued kinds (evaluators key on them); empty otherwise."""
        return ()

    # ---- encode stage --------------------------------------------------------------------------
    def bind(self, root: Path) -> None:
        """Called once with the bundle folder: a kind that needs a file of the bundle (a tokenizer) loads it."""

    def encode(self, values: list, run: RunGraph, cache: Any = None) -> list:
        """Parsed values → graph-ready values, once per request. Identity for kinds without an encoder."""
        return values

    # ---- graph ----------------------------------------------------------------------------------
    def specs(self, null: Any = None) -> list[TensorSpec]:
        """The graph inputs this condition feeds (``null``: a declared null value widens the range)."""
        raise NotImplementedError

    def feeds(self, values: Sequence[Any]) -> dict[str, np.ndarray]:
        """Graph input arrays for one row per value."""
        raise NotImplementedError

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        """Example inputs spanning the declared range (export traces with them; parity draws between min and max)."""
        raise NotImplementedError

    def edge_feeds(self, batch: int) -> tuple[str, str, dict[str, np.ndarray]] | None:
        """Inputs at an edge of the declared range that ``example_feeds`` does not reach, which a bring-your-own
        model is probed with before export: ``(where, expected, feeds)``; ``None`` when the examples span the range."""
        return None

    def null_feeds(self, value: Any) -> dict[str, np.ndarray]:
        """One unbatched row of graph inputs for a declared null value."""
        return {k: v[0] for k, v in self.feeds([self.parse(value)]).items()}

    # ---- describe -------------------------------------------------------------------------------
    def row_label(self, value: Any) -> str:
        return f"{self.name}={value}"

    def describe(self) -> str:
        raise NotImplementedError

    def example(self) -> str:
        """A value ``parse`` accepts, for ``--cond NAME=VALUE`` help texts and for bench's one condition row."""
        raise NotImplementedError

    def to_json(self) -> dict:
        data = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: dict) -> ConditionKind:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**values)

    def _error(self, got: object, expected: str, fix: str | None = None) -> ConditionError:
        return ConditionError(f"Condition '{self.name}'", got=got, expected=expected, fix=fix)


def condition_from_json(data: dict) -> ConditionKind:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in KINDS:
        raise ConditionError("Condition kind", got=kind, expected=f"one of {sorted(KINDS)}")
    try:
        return KINDS[kind].from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConditionError(f"Condition '{data.get('name')}' ({kind}) in the manifest", got=f"{type(exc).__name__}: {exc}",
                             expected=f"the fields of a {kind} condition") from None


def condition_to_json(cond: ConditionKind) -> dict:
    return cond.to_json()
