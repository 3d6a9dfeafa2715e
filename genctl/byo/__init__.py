"""Bring your own model: ``genctl.export_model`` (``byo/export.py``) with a declared loop (``byo/loops.py``)."""
from genctl.byo.export import export_model
from genctl.byo.loops import Diffusion, Loop, NextToken, OneShot, Recurrent

__all__ = ["Diffusion", "Loop", "NextToken", "OneShot", "Recurrent", "export_model"]
