"""Sampling controls: host-side knobs of a sampler (seed aside), each with its type and range.

A *control* steers the sampler on the host (temperature, steps, guidance_scale ...). Samplers
declare theirs (``Sampler.controls``; each ``help`` is its command-line option's help too); every
request is checked against the declaration, so a bad value is a one-line error before any graph runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from genctl.errors import ConditionError


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
