"""``continuous``: one float in ``[low, high]`` (``--cond smile=0.7``); the graph gets a float32 (batch,) input."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genctl.conditions.kinds import ConditionKind
from genctl.errors import GenctlError
from genctl.spec import TensorSpec


@dataclass(frozen=True)
class Continuous(ConditionKind):
    name: str
    low: float = 0.0
    high: float = 1.0
    kind = "continuous"

    def __post_init__(self):
        _check_range(self.name, self.low, self.high)

    def parse(self, value: object) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise self._error(repr(value), f"a number in [{self.low}, {self.high}]") from None
        if not (self.low <= number <= self.high):  # NaN fails too
            raise self._error(number, f"a number in [{self.low}, {self.high}]")
        return number

    def default(self) -> float:
        """The middle of the range (0 for an unbounded one)."""
        mid = (self.low + self.high) / 2
        return mid if math.isfinite(mid) else float(np.clip(0.0, self.low, self.high))

    def check_null(self, value: Any) -> None:
        if isinstance(value, (list, tuple, np.ndarray)) or not np.isfinite(np.asarray(value, dtype=float)).all():
            raise self._error(repr(value), "a number")

    def specs(self, null: Any = None) -> list[TensorSpec]:
        return [TensorSpec(self.name, "float32", ["batch"], "condition")]

    def feeds(self, values: Sequence[float]) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(values, dtype=np.float32)}

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        low, high = (self.low, self.high) if math.isfinite(self.low) and math.isfinite(self.high) else (-1.0, 1.0)
        return {self.name: np.linspace(low, high, batch, dtype=np.float32)}

    def null_feeds(self, value: Any) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(float(value), dtype=np.float32)}

    def row_label(self, value: float) -> str:
        return f"{self.name}={value:g}"

    def describe(self) -> str:
        return f"continuous in [{self.low}, {self.high}]"

    def example(self) -> str:
        return f"{self.default():g}"


def _check_range(name: str, low: float, high: float) -> None:
    """A declaration whose range is empty would refuse every value later: refuse it now."""
    if math.isnan(low) or math.isnan(high) or low > high:
        raise GenctlError(f"Condition '{name}' range", got=f"low={low}, high={high}", expected="low <= high")
