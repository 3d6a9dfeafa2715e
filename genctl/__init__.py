"""genctl: controlled generative models from PyTorch to verified, benchmarked inference.

Public API::

    import genctl
    gen = genctl.load("bundles/cvae", backend="onnxruntime")
    samples = gen.generate({"label": 7}, n=16, seed=0)
"""
from __future__ import annotations

__version__ = "0.1.0"

from genctl.errors import BackendUnavailable, BundleError, ConditionError, GenctlError, ParityError  # noqa: E402


def load(bundle, backend: str = "auto", precision: str = "fp32"):
    """Open a bundle for generation: ``genctl.load(path).generate(conditions, n, seed)``."""
    from genctl.runtime.generator import Generator

    return Generator.load(bundle, backend=backend, precision=precision)


def export(checkpoint, out, *, overwrite: bool = False):
    """Export a checkpoint folder to a bundle (graph + loop parity checked)."""
    from genctl.export import export_bundle

    return export_bundle(checkpoint, out, overwrite=overwrite)


__all__ = ["BackendUnavailable", "BundleError", "ConditionError", "GenctlError", "ParityError", "export", "load", "__version__"]
