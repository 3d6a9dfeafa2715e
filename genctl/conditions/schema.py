"""A model's ordered conditions (as stored in the manifest) and a parsed request's grid rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genctl.conditions.kinds import ConditionKind, RunGraph, condition_from_json
from genctl.errors import ConditionError


@dataclass
class ConditionRows:
    """A parsed request: one row per distinct condition combination (rows of a sample grid)."""

    values: dict[str, list] = field(default_factory=dict)  # condition name -> one parsed (then encoded) value per row
    labels: list[str] = field(default_factory=list)  # human label per row, e.g. "label=7"

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def feeds(self, schema: ConditionSchema, n: int) -> dict[str, np.ndarray]:
        """Condition arrays for ``n`` samples per row, rows in order: (rows*n, ...)."""
        out = {}
        for cond in schema.conditions:
            out.update(cond.feeds([v for v in self.values[cond.name] for _ in range(n)]))
        return out


class ConditionSchema:
    """The ordered conditions of a model, as stored in the manifest."""

    def __init__(self, conditions: Sequence[ConditionKind]):
        self.conditions = list(conditions)
        self.by_name = {c.name: c for c in self.conditions}

    def to_json(self) -> list[dict]:
        return [c.to_json() for c in self.conditions]

    @classmethod
    def from_json(cls, data: list[dict]) -> ConditionSchema:
        return cls([condition_from_json(d) for d in data])

    def bind(self, root: Path) -> None:
        """Let kinds that need a file of the bundle (a tokenizer) load it."""
        for cond in self.conditions:
            cond.bind(root)

    @property
    def encoders(self) -> list[str]:
        """Bundle graphs that the encode stage runs (text prompts); empty for most models."""
        return [c.encoder_graph for c in self.conditions if c.encoder_graph]

    def with_prompts(self, request: dict[str, Any] | None, prompts: Sequence[str] | None, subject: str = "--prompt") -> dict[str, Any]:
        """``--prompt`` / a request's ``prompt``: the value of the model's text condition (one row per prompt)."""
        request = dict(request or {})
        if prompts is None:
            return request
        targets = [c.name for c in self.conditions if c.takes_prompts]
        if len(targets) != 1:
            got = "a model without a text condition" if not targets else f"text conditions {targets}"
            raise ConditionError(subject, got=got, expected="a bundle with one text condition (name the condition: --cond NAME=TEXT)"
                                 if targets else f"a bundle with a text condition; this one takes {self.describe() or 'no conditions'}")
        if targets[0] in request:
            raise ConditionError(subject, got=f"a prompt and a value of condition '{targets[0]}'", expected="one of the two")
        request[targets[0]] = list(prompts)
        return request

    def parity_request(self) -> dict[str, Any] | None:
        """The conditions loop-parity checks generate for (export, the build gate): each kind's
        ``parity_values`` (a prompt and the empty prompt for text), else the default rows."""
        return {c.name: v for c in self.conditions if (v := c.parity_values()) is not None} or None

    def describe(self) -> str:
        return "; ".join(f"{c.name}: {c.describe()}" for c in self.conditions)

    def parse(self, request: dict[str, Any] | None) -> ConditionRows:
        """Turn ``{"label": "7"}`` or ``{"label": [0, 1, 2]}`` into grid rows.

        A list gives one row per value; several lists must have the same length (zipped). A missing
        condition takes its kind's default rows (a categorical one: every class, one row each), so
        ``generate`` with no ``--cond`` shows the whole model.
        """
        request = dict(request or {})
        unknown = sorted(set(request) - set(self.by_name))
        if unknown:
            raise ConditionError(f"Condition '{unknown[0]}'", got="an unknown name",
                                 expected=f"one of {sorted(self.by_name) or '(no conditions)'}")
        columns = {cond.name: cond.column(request.get(cond.name)) for cond in self.conditions}
        lengths = {len(v) for v in columns.values() if len(v) > 1}
        if len(lengths) > 1:
            raise ConditionError("Conditions", got=f"lists of lengths {sorted(lengths)}",
                                 expected="lists of one length (they are zipped into rows) or single values")
        n_rows = lengths.pop() if lengths else 1
        values = {k: (v * n_rows if len(v) == 1 else v) for k, v in columns.items()}
        labels = [" ".join(c.row_label(values[c.name][i]) for c in self.conditions) for i in range(n_rows)]
        return ConditionRows(values=values, labels=labels)

    def encode(self, rows: ConditionRows, run: RunGraph, cache: Any = None) -> ConditionRows:
        """The encode stage: each kind with an encoder turns its parsed values into graph-ready ones, once per request."""
        if not self.encoders:
            return rows
        values = {c.name: c.encode(rows.values[c.name], run, cache) for c in self.conditions}
        return ConditionRows(values=values, labels=rows.labels)


def parse_cond_args(items: Sequence[str]) -> dict[str, str]:
    """``["label=7", "style=0.1,0.2"]`` → ``{"label": "7", "style": "0.1,0.2"}`` (the CLI's --cond)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConditionError("--cond", got=repr(item), expected="NAME=VALUE, e.g. label=7 or label=0,1,2")
        key, value = item.split("=", 1)
        if key.strip() in out:  # the last one would silently win
            raise ConditionError(f"--cond '{key.strip()}'", got="given twice", expected=f"once; several values give rows: {key.strip()}=1,2")
        out[key.strip()] = value.strip()
    return out


def read_cond_files(items: Sequence[str], schema: ConditionSchema) -> dict[str, np.ndarray]:
    """The CLI's ``--cond-file``: ``emb.npy`` or ``NAME=emb.npy`` → ``{name: array}`` for vector conditions.

    A bare path names its condition by the file stem, or goes to the model's only vector condition.
    The array is (dim,) for one row or (rows, dim) for one grid row each; ``allow_pickle=False``.
    """
    vectors = [c.name for c in schema.conditions if c.takes_arrays]
    out: dict[str, np.ndarray] = {}
    for item in items:
        name, _, path = item.rpartition("=")
        if not name:
            stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            name = stem if stem in vectors else (vectors[0] if len(vectors) == 1 else stem)
        if name not in vectors:
            raise ConditionError(f"--cond-file {item}", got=f"condition '{name}'",
                                 expected=f"NAME=FILE.npy with NAME one of the vector conditions {vectors}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConditionError(f"--cond-file {item}", got=f"an unreadable file ({type(exc).__name__})",
                                 expected="a .npy array of numbers (np.save)") from None
        if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.number):
            raise ConditionError(f"--cond-file {item}", got=f"{arr.dtype} {arr.shape}", expected="(dim,) or (rows, dim) numbers")
        out[name] = arr.astype(np.float64)
    return out
