"""``vector``: ``dim`` floats in ``[low, high]``; requests give comma-separated numbers or a .npy row."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genctl.conditions.continuous import _check_range
from genctl.conditions.kinds import ConditionKind
from genctl.spec import TensorSpec


@dataclass(frozen=True)
class Vector(ConditionKind):
    name: str
    dim: int
    low: float = -math.inf
    high: float = math.inf
    kind = "vector"
    takes_arrays = True

    def __post_init__(self):
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        _check_range(self.name, self.low, self.high)

    def parse(self, value: object) -> tuple[float, ...]:
        items = value if isinstance(value, (list, tuple, np.ndarray)) else str(value).split(",")
        try:
            vec = tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise self._error(repr(value), f"{_count(self.dim, 'comma-separated number')}") from None
        if len(vec) != self.dim:
            raise self._error(_count(len(vec), "value"), _count(self.dim, "value"))
        bad = [v for v in vec if not (math.isfinite(v) and self.low <= v <= self.high)]
        if bad:
            raise self._error(bad[0], f"values in [{self.low}, {self.high}]")
        return vec

    def column(self, raw: Any) -> list:
        """One vector (numbers or text) is one row; a list of vectors or a (rows, dim) array is a row each."""
        if raw is None:
            return self.default_column()
        if isinstance(raw, np.ndarray) and raw.ndim == 2:  # --cond-file rows.npy: one row per vector
            raw = raw.tolist()
        items = raw if isinstance(raw, list) and raw and isinstance(raw[0], (list, tuple)) else [raw]
        return [self.parse(v) for v in items]

    def default(self) -> tuple[float, ...]:
        """Zeros (clipped into the range)."""
        return (float(np.clip(0.0, self.low, self.high)),) * self.dim

    def check_null(self, value: Any) -> None:
        arr = np.asarray(value, dtype=float) if isinstance(value, (list, tuple, np.ndarray)) else np.zeros(0)
        if arr.size != self.dim or not np.isfinite(arr).all():
            raise self._error(repr(value), _count(self.dim, "number"))

    def specs(self, null: Any = None) -> list[TensorSpec]:
        return [TensorSpec(self.name, "float32", ["batch", self.dim], "condition")]

    def feeds(self, values: Sequence[Sequence[float]]) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(values, dtype=np.float32).reshape(len(values), self.dim)}

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        vec = np.random.default_rng(0).standard_normal((batch, self.dim)).astype(np.float32)
        return {self.name: np.clip(vec, self.low, self.high) if (self.low > -1e30 and self.high < 1e30) else vec}

    def null_feeds(self, value: Any) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(value, dtype=np.float32).reshape(self.dim)}

    def row_label(self, value: Sequence[float]) -> str:
        return f"{self.name}=[{', '.join(f'{x:g}' for x in value[:4])}{', ...' if len(value) > 4 else ''}]"

    def describe(self) -> str:
        return f"vector({self.dim}) in [{self.low}, {self.high}]"

    def example(self) -> str:
        return ",".join(f"{v:g}" for v in self.default())


def _count(n: int, word: str) -> str:
    """``1 value``, ``3 values``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
