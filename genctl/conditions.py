"""Conditioning schema: what a user may ask a model for, and the sampling controls.

A *condition* enters the graph (``label`` int64 class index, ``attributes`` float vector). A
*control* steers the sampler on the host (seed, temperature, steps, guidance_scale ...). Both are
described in the manifest and validated on every request, so a bad value is a one-line error
before any graph runs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from genctl.errors import ConditionError


@dataclass(frozen=True)
class Categorical:
    """A class index in ``[0, len(names))``; requests may use the index or the label name."""

    name: str
    names: tuple[str, ...]
    kind: str = "categorical"

    def parse(self, value: object) -> int:
        text = str(value).strip()
        if text in self.names:
            return self.names.index(text)
        if isinstance(value, (int, np.integer)) or text.lstrip("-").isdecimal():  # not isdigit: int('¹') fails
            index = int(text)
            if 0 <= index < len(self.names):
                return index
            raise ConditionError(f"Condition '{self.name}'", got=index,
                                 expected=f"an index in 0..{len(self.names) - 1} or one of {self._choices()}")
        raise ConditionError(f"Condition '{self.name}'", got=repr(value),
                             expected=f"one of {self._choices()} (or an index 0..{len(self.names) - 1})")

    def _choices(self) -> str:
        shown = ", ".join(self.names[:12])
        return "[" + shown + (", ..." if len(self.names) > 12 else "") + "]"

    def describe(self) -> str:
        return f"categorical({len(self.names)}): {', '.join(self.names)}"

    def to_array(self, values: Sequence[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)


@dataclass(frozen=True)
class Vector:
    """A float vector of ``dim`` values in ``[low, high]``; requests give comma-separated numbers."""

    name: str
    dim: int
    low: float = -math.inf
    high: float = math.inf
    kind: str = "vector"

    def parse(self, value: object) -> tuple[float, ...]:
        items = value if isinstance(value, (list, tuple, np.ndarray)) else str(value).split(",")
        try:
            vec = tuple(float(v) for v in items)
        except ValueError:
            raise ConditionError(f"Condition '{self.name}'", got=repr(value),
                                 expected=f"{self.dim} comma-separated numbers") from None
        if len(vec) != self.dim:
            raise ConditionError(f"Condition '{self.name}'", got=f"{len(vec)} values", expected=f"{self.dim} values")
        bad = [v for v in vec if not (math.isfinite(v) and self.low <= v <= self.high)]
        if bad:
            raise ConditionError(f"Condition '{self.name}'", got=bad[0], expected=f"values in [{self.low}, {self.high}]")
        return vec

    def describe(self) -> str:
        return f"vector({self.dim}) in [{self.low}, {self.high}]"

    def default(self) -> tuple[float, ...]:
        """A request without this condition gets zeros (clipped into the range)."""
        return (float(np.clip(0.0, self.low, self.high)),) * self.dim

    def to_array(self, values: Sequence[Sequence[float]]) -> np.ndarray:
        return np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class Continuous:
    """One float in ``[low, high]`` (``--cond smile=0.7``); the graph gets a float32 (batch,) input."""

    name: str
    low: float = 0.0
    high: float = 1.0
    kind: str = "continuous"

    def parse(self, value: object) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConditionError(f"Condition '{self.name}'", got=repr(value), expected=f"a number in [{self.low}, {self.high}]") from None
        if not (self.low <= number <= self.high):  # NaN fails too
            raise ConditionError(f"Condition '{self.name}'", got=number, expected=f"a number in [{self.low}, {self.high}]")
        return number

    def describe(self) -> str:
        return f"continuous in [{self.low}, {self.high}]"

    def default(self) -> float:
        """A request without this condition gets the middle of the range (0 for an unbounded one)."""
        mid = (self.low + self.high) / 2
        return mid if math.isfinite(mid) else float(np.clip(0.0, self.low, self.high))

    def to_array(self, values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float32)


Condition = Categorical | Vector | Continuous
CONDITION_KINDS = "'categorical', 'continuous' or 'vector'"


def condition_from_json(data: dict) -> Condition:
    if data.get("kind") == "categorical":
        return Categorical(name=data["name"], names=tuple(data["names"]))
    if data.get("kind") == "vector":
        return Vector(name=data["name"], dim=int(data["dim"]), low=float(data["low"]), high=float(data["high"]))
    if data.get("kind") == "continuous":
        return Continuous(name=data["name"], low=float(data["low"]), high=float(data["high"]))
    raise ConditionError("Condition kind", got=data.get("kind"), expected=CONDITION_KINDS)


def condition_to_json(cond: Condition) -> dict:
    data = asdict(cond)
    if isinstance(cond, Categorical):
        data["names"] = list(cond.names)
    return data


@dataclass
class ConditionRows:
    """A parsed request: one row per distinct condition combination (rows of a sample grid)."""

    values: dict[str, list] = field(default_factory=dict)  # condition name -> one parsed value per row
    labels: list[str] = field(default_factory=list)  # human label per row, e.g. "label=7"

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def feeds(self, schema: "ConditionSchema", n: int) -> dict[str, np.ndarray]:
        """Condition arrays for ``n`` samples per row, rows in order: (rows*n, ...)."""
        out = {}
        for cond in schema.conditions:
            repeated = [v for v in self.values[cond.name] for _ in range(n)]
            out[cond.name] = cond.to_array(repeated)
        return out


class ConditionSchema:
    """The ordered conditions of a model, as stored in the manifest."""

    def __init__(self, conditions: Sequence[Condition]):
        self.conditions = list(conditions)
        self.by_name = {c.name: c for c in self.conditions}

    def to_json(self) -> list[dict]:
        return [condition_to_json(c) for c in self.conditions]

    @classmethod
    def from_json(cls, data: list[dict]) -> "ConditionSchema":
        return cls([condition_from_json(d) for d in data])

    def parse(self, request: dict[str, Any] | None) -> ConditionRows:
        """Turn ``{"label": "7"}`` or ``{"label": [0, 1, 2]}`` into grid rows.

        A list gives one row per value; several lists must have the same length (zipped). A missing
        categorical condition defaults to every class (one row each), so ``generate`` with no
        ``--cond`` shows the whole model.
        """
        request = dict(request or {})
        unknown = sorted(set(request) - set(self.by_name))
        if unknown:
            raise ConditionError(f"Condition '{unknown[0]}'", got="an unknown name",
                                 expected=f"one of {sorted(self.by_name) or '(no conditions)'}")
        columns: dict[str, list] = {}
        for cond in self.conditions:
            columns[cond.name] = self._column(cond, request.get(cond.name))
        lengths = {len(v) for v in columns.values() if len(v) > 1}
        if len(lengths) > 1:
            raise ConditionError("Conditions", got=f"lists of lengths {sorted(lengths)}",
                                 expected="lists of one length (they are zipped into rows) or single values")
        n_rows = lengths.pop() if lengths else 1
        values = {k: (v * n_rows if len(v) == 1 else v) for k, v in columns.items()}
        labels = [self._row_label(values, i) for i in range(n_rows)]
        return ConditionRows(values=values, labels=labels)

    def _column(self, cond: Condition, raw: Any) -> list:
        if raw is None:
            if isinstance(cond, Categorical):
                return list(range(len(cond.names)))
            return [cond.default()]
        if isinstance(cond, (Categorical, Continuous)):  # "0.1,0.5" or [0.1, 0.5]: one row per value
            items = raw if isinstance(raw, (list, tuple, np.ndarray)) else str(raw).split(",")
            return [cond.parse(v) for v in items]
        if isinstance(raw, np.ndarray) and raw.ndim == 2:  # --cond-file rows.npy: one row per vector
            raw = raw.tolist()
        items = raw if isinstance(raw, list) and raw and isinstance(raw[0], (list, tuple)) else [raw]
        return [cond.parse(v) for v in items]

    def _row_label(self, values: dict[str, list], i: int) -> str:
        parts = []
        for cond in self.conditions:
            v = values[cond.name][i]
            if isinstance(cond, Categorical):
                parts.append(f"{cond.name}={cond.names[v]}")
            elif isinstance(cond, Continuous):
                parts.append(f"{cond.name}={v:g}")
            else:
                parts.append(f"{cond.name}=[{', '.join(f'{x:g}' for x in v[:4])}{', ...' if len(v) > 4 else ''}]")
        return " ".join(parts)


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
    vectors = [c.name for c in schema.conditions if isinstance(c, Vector)]
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


# ---------------------------------------------------------------- controls

@dataclass(frozen=True)
class Control:
    """One sampling control with its range; ``low_open`` / ``high_open`` make a bound exclusive."""

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()  # for str controls: the allowed values
    help: str = ""

    def check(self, value: Any) -> Any:
        flag = "--" + self.name.replace("_", "-")
        if isinstance(value, bool) or (self.type is int and isinstance(value, float) and not value.is_integer()):
            # int(2.5) would silently truncate and True is an int to Python: refuse both
            raise ConditionError(f"Control {flag}", got=repr(value), expected=f"a {self.type.__name__}")
        try:
            value = self.type(value)
        except (TypeError, ValueError, OverflowError):
            raise ConditionError(f"Control {flag}", got=repr(value), expected=f"a {self.type.__name__}") from None
        if self.choices and value not in self.choices:
            raise ConditionError(f"Control {flag}", got=repr(value), expected=f"one of {list(self.choices)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConditionError(f"Control {flag}", got="NaN" if math.isnan(value) else value,
                                 expected=f"a finite number {self._range()}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise ConditionError(f"Control {flag}", got=value, expected=f"a value {self._range()}")
        return value

    def _range(self) -> str:
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


def resolve_controls(spec: Sequence[Control], given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Validate ``given`` controls against ``spec``; unset ones take the manifest's defaults.

    ``None`` means "not given". A control the sampler does not know is an error, so a typo or a
    diffusion control sent to a language model never passes silently.
    """
    known = {c.name: c for c in spec}
    extra = sorted(k for k, v in given.items() if v is not None and k not in known)
    if extra:
        raise ConditionError(f"Control '{extra[0]}'", got="a control this model's sampler does not use",
                             expected=f"one of {sorted(known) or '(none)'}")
    out = {}
    for name, control in known.items():
        value = given.get(name)
        if value is None:
            value = defaults.get(name, control.default)
        out[name] = control.check(value)
    return out
