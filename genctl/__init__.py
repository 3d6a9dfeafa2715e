"""genctl: controlled generative models from PyTorch to verified, benchmarked inference.

Public API::

    import genctl
    gen = genctl.load("bundles/cvae", backend="onnxruntime")
    samples = gen.generate({"label": 7}, n=16, seed=0)
"""
from __future__ import annotations

__version__ = "0.1.0"

from genctl.conditions import Categorical, Continuous, Vector  # noqa: E402  (condition declarations)
from genctl.errors import BackendUnavailable, BundleError, ConditionError, GenctlError, ParityError  # noqa: E402


def load(bundle, backend: str = "auto", precision: str = "fp32"):
    """Open a bundle for generation: ``genctl.load(path).generate(conditions, n, seed)``."""
    from genctl.runtime.generator import Generator

    return Generator.load(bundle, backend=backend, precision=precision)


def export_model(module, out, *, loop, conditions=(), factory=None, kwargs=None, evaluate_on=None, overwrite=False):
    """Export your own conditional ``nn.Module`` to a bundle (see ``genctl.byo.export_model``)."""
    from genctl.byo import export_model as _export_model

    return _export_model(module, out, loop=loop, conditions=conditions, factory=factory, kwargs=kwargs,
                         evaluate_on=evaluate_on, overwrite=overwrite)


def export(checkpoint, out, *, overwrite: bool = False):
    """Export a checkpoint folder to a bundle (graph + loop parity checked)."""
    from genctl.export import export_bundle

    return export_bundle(checkpoint, out, overwrite=overwrite)


__all__ = ["BackendUnavailable", "BundleError", "Categorical", "ConditionError", "Continuous", "GenctlError", "ParityError",
           "Vector", "export", "export_model", "load", "__version__"]
