"""Triton Python-backend model written by `genctl export-triton`: a genctl bundle's whole sampling loop
(conditions in, samples out, ``GenerateModel``) or one exported graph (``GraphModel``) on ONNX Runtime.

genctl and onnxruntime must be importable by Triton's Python backend: installed into its Python, on
PYTHONPATH (read here: the backend's stub ignores it), or in an EXECUTION_ENV_PATH environment.
"""
import os
import site
import sys


def _import_path() -> None:
    """PYTHONPATH's entries (and their .pth files: editable installs) ahead of the stub's own path."""
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    before = list(sys.path)
    for path in entries:
        site.addsitedir(path)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = [p for p in entries if p in added] + [p for p in added if p not in entries] + before


_import_path()

import triton_python_backend_utils as pb_utils  # noqa: E402

from genctl.serve.triton_model import GenerateModel as Model  # noqa: E402


class TritonPythonModel(Model):
    pb = pb_utils
