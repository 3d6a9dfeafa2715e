"""Family registry: one line per family."""
from __future__ import annotations

from genctl.errors import GenctlError
from genctl.families.base import Family, GraphDef
from genctl.families.cflow import CFlow
from genctl.families.cgan import CGAN
from genctl.families.charrnn import CharRNN
from genctl.families.chartransformer import CharTransformer
from genctl.families.custom import Custom
from genctl.families.cvae import CVAE
from genctl.families.diffusion import Diffusion
from genctl.families.ntm import NTM
from genctl.families.textdiffusion import TextDiffusion

FAMILIES: dict[str, Family] = {
    "charrnn": CharRNN(), "chartransformer": CharTransformer(),
    "cvae": CVAE(),
    "diffusion": Diffusion(),
    "textdiffusion": TextDiffusion(),  # text prompts by cross-attention (needs genctl[text])
    "cgan": CGAN(),
    "cflow": CFlow(),
    "ntm": NTM(),  # neural Turing machine: copy / repeat copy (bits) and names
    "custom": Custom(),  # bring your own model: genctl.export_model
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise GenctlError(f"Family '{name}'", got="an unknown name", expected=f"one of {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "Family", "GraphDef", "get_family"]
