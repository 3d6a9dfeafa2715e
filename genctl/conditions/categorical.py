"""``categorical``: a class index in ``[0, len(names))``; requests may give the index or the class name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genctl.conditions.kinds import ConditionKind
from genctl.spec import TensorSpec


@dataclass(frozen=True)
class Categorical(ConditionKind):
    """``Categorical("label", names=("0", ..., "9"))``: the graph gets an int64 (batch,) input."""

    name: str
    names: tuple[str, ...]
    kind = "categorical"

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))

    def parse(self, value: object) -> int:
        text = str(value).strip()
        if text in self.names:
            return self.names.index(text)
        if isinstance(value, (int, np.integer)) or text.lstrip("-").isdecimal():  # not isdigit: int('¹') fails
            index = int(text)
            if isinstance(value, str) and self._numbered():  # names that are numbers ("1".."5" repeats): typed text is a name, never an index
                raise self._error(index, f"one of {self._choices()}")
            if 0 <= index < len(self.names):
                return index
            raise self._error(index, f"an index in 0..{len(self.names) - 1} or one of {self._choices()}")
        raise self._error(repr(value), f"one of {self._choices()} (or an index 0..{len(self.names) - 1})")

    def default_column(self) -> list:
        """No value: every class, one grid row each (``generate`` with no ``--cond`` shows the whole model)."""
        return list(range(len(self.names)))

    def default(self) -> int:
        return 0

    def check_null(self, value: Any) -> None:
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
            raise self._error(repr(value), "a class index >= 0 (e.g. the extra null class)")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.names

    def specs(self, null: Any = None) -> list[TensorSpec]:
        high = max(len(self.names), int(null) + 1) if null is not None else len(self.names)
        return [TensorSpec(self.name, "int64", ["batch"], "condition", high=high)]

    def feeds(self, values: Sequence[int]) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(values, dtype=np.int64)}

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        return {self.name: np.arange(batch, dtype=np.int64) % len(self.names)}

    def edge_feeds(self, batch: int) -> tuple[str, str, dict[str, np.ndarray]]:
        top = len(self.names) - 1
        return (f"at its largest index {top} ('{self.names[top]}')",
                f"a model that takes every index 0..{top} (e.g. an nn.Embedding({len(self.names)}, ...) or larger)",
                {self.name: np.full(batch, top, dtype=np.int64)})

    def null_feeds(self, value: Any) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(int(value), dtype=np.int64)}

    def row_label(self, value: int) -> str:
        return f"{self.name}={self.names[value]}"

    def describe(self) -> str:
        return f"categorical({len(self.names)}): {', '.join(self.names)}"

    def example(self) -> str:
        return self.names[0]

    def _numbered(self) -> bool:
        """Class names that are numbers other than their own indices (``repeats`` "1".."5")."""
        return all(n.isdecimal() for n in self.names) and self.names != tuple(str(i) for i in range(len(self.names)))

    def _choices(self) -> str:
        shown = ", ".join(self.names[:12])
        return "[" + shown + (", ..." if len(self.names) > 12 else "") + "]"
