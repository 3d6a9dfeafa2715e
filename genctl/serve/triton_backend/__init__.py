"""The template of the ``model.py`` files in a repository written by ``genctl export-triton``.

It runs inside Triton's Python backend: it sets up the import path, then subclasses a model of
``genctl.serve.triton_model`` (``GenerateModel``, the whole loop, or ``GraphModel``, one graph) with
Triton's ``triton_python_backend_utils``. Nothing imports it as a module; the exporter writes its text.
"""
from pathlib import Path

TEMPLATE = Path(__file__).parent / "model.py"


def model_py(model: str) -> str:
    """``model.py`` for a repository model: ``"GenerateModel"`` or ``"GraphModel"``."""
    if model not in ("GenerateModel", "GraphModel"):
        raise ValueError(model)
    return TEMPLATE.read_text().replace("import GenerateModel as Model", f"import {model} as Model")
