"""genctl: controlled generative models from PyTorch to verified, benchmarked inference.

Public API::

    import genctl
    gen = genctl.load("bundles/cvae", backend="onnxruntime")
    samples = gen.generate({"label": 7}, n=16, seed=0)
"""
from __future__ import annotations

from genctl.conditions import Categorical, Continuous, Text, Vector  # noqa: E402  (condition declarations)
from genctl.errors import BackendUnavailable, BundleError, ConditionError, GenctlError, ParityError  # noqa: E402
from genctl.version import __version__  # noqa: E402


def load(bundle, backend: str = "auto", precision: str = "fp32"):
    """Open a bundle for generation: ``genctl.load(path).generate(conditions, n, seed)``."""
    from genctl.runtime.generator import Generator

    return Generator.load(bundle, backend=backend, precision=precision)


def export_model(module, out, *, loop, conditions=(), factory=None, kwargs=None, evaluate_on=None, overwrite=False,
                 text_encoder=None, tokenizer=None, text_encoder_factory=None, text_encoder_kwargs=None, verbose=False):
    """Export your own conditional ``nn.Module`` to a bundle (see ``genctl.byo.export.export_model``).

    With a ``genctl.Text`` condition the bundle also gets the text encoder: ``text_encoder=None`` is the
    shipped all-MiniLM-L6-v2; your own needs ``tokenizer=`` (a tokenizer.json path). ``verbose=True`` shows
    the exporter's log (otherwise a failure is one line naming its cause).
    """
    from genctl.byo.export import export_model as _export_model

    return _export_model(module, out, loop=loop, conditions=conditions, factory=factory, kwargs=kwargs,
                         evaluate_on=evaluate_on, overwrite=overwrite, text_encoder=text_encoder, tokenizer=tokenizer,
                         text_encoder_factory=text_encoder_factory, text_encoder_kwargs=text_encoder_kwargs, verbose=verbose)


def export(checkpoint, out, *, overwrite: bool = False):
    """Export a checkpoint folder to a bundle (graph + loop parity checked)."""
    from genctl.export import export_bundle

    return export_bundle(checkpoint, out, overwrite=overwrite)


__all__ = ["BackendUnavailable", "BundleError", "Categorical", "ConditionError", "Continuous", "GenctlError", "ParityError",
           "Text", "Vector", "export", "export_model", "load", "__version__"]
