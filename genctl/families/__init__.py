"""Family registry: one line per family."""
from __future__ import annotations

from genctl.errors import GenctlError
from genctl.families.base import Family, GraphDef
from genctl.families.cvae import CVAE

FAMILIES: dict[str, Family] = {
    "cvae": CVAE(),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise GenctlError(f"Family '{name}'", got="an unknown name", expected=f"one of {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "Family", "GraphDef", "get_family"]
