"""Bring your own model: ``genctl.export_model(module, out=..., conditions=[...], loop=...)``.

The module is checked against the declared loop shape and conditions (one-line errors naming the
argument), saved as a checkpoint of the ``custom`` family (safetensors weights + the factory's
import path and JSON kwargs, never pickle) and exported by the ordinary exporter: ONNX, graph
parity, loop parity, atomic bundle. The torch reference backend rebuilds the module by calling
``factory(**kwargs)`` and loading the weights, so the factory must be importable wherever the
bundle runs on ``--backend torch`` (the ONNX backends need only the bundle).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from genctl.byo.loops import Diffusion, Loop, NextToken, OneShot, Recurrent, decl_json
from genctl.byo.signature import check_forward, trial_call
from genctl.conditions import Categorical, Condition, ConditionSchema, Continuous, Vector
from genctl.errors import GenctlError


def export_model(module: nn.Module, out: str | Path, *, loop: Loop, conditions: Sequence[Condition] = (),
                 factory: str | None = None, kwargs: dict[str, Any] | None = None, evaluate_on: str | None = None,
                 overwrite: bool = False):
    """Export a user's conditional model to a bundle every genctl command accepts; returns the Bundle.

    ``loop``: ``OneShot(noise_shape=...)``, ``Diffusion(sample_shape=..., null=...)``,
    ``NextToken(vocab=..., context=...)`` or ``Recurrent(vocab=..., context=..., state=...)``.
    ``conditions``: ``Categorical(name, names)``, ``Continuous(name, low, high)``, ``Vector(name, dim)``,
    passed to ``forward`` in this order after the loop's own arguments.
    ``factory``: ``"module:attr"`` that rebuilds the module with ``**kwargs`` (default: the module's
    class with ``kwargs``). ``evaluate_on``: a shipped dataset whose evaluator fits (``"mnist"``).
    """
    from genctl.export import export_bundle
    from genctl.training.checkpoint import write_checkpoint_files

    config = byo_config(module, loop=loop, conditions=conditions, factory=factory, kwargs=kwargs, evaluate_on=evaluate_on)
    module.eval()
    with tempfile.TemporaryDirectory(prefix="genctl-byo-") as tmp:
        write_checkpoint_files(Path(tmp), module, config)
        return export_bundle(tmp, out, overwrite=overwrite)


def byo_config(module: nn.Module, *, loop: Loop, conditions: Sequence[Condition], factory: str | None,
               kwargs: dict | None, evaluate_on: str | None) -> dict:
    """Check everything genctl can check before exporting and return the checkpoint config."""
    if not isinstance(module, nn.Module):
        raise GenctlError("export_model module", got=type(module).__name__, expected="a torch.nn.Module")
    if not isinstance(loop, (OneShot, Diffusion, NextToken, Recurrent)):
        raise GenctlError("export_model loop", got=type(loop).__name__,
                          expected="genctl.byo.OneShot, Diffusion, NextToken or Recurrent")
    loop.check()
    schema = _schema(conditions)
    _check_evaluate_on(evaluate_on, schema)
    if isinstance(loop, Diffusion):
        _check_nulls(loop.null, schema)
    names = check_forward(module, loop, schema)
    output_shape = trial_call(module, loop, schema, names)
    kwargs = _json_kwargs(kwargs)
    factory = factory or _class_path(module)
    byo = {"factory": factory, "kwargs": kwargs, "loop": loop.kind, "conditions": schema.to_json(),
           "decl": decl_json(loop), "names": names, "output_shape": output_shape}
    _check_rebuild(module, factory, kwargs)
    dataset = {"name": evaluate_on or "custom", "label_names": _label_names(schema)}
    if output_shape and len(output_shape) == 3:
        dataset["shape"] = output_shape
    return {"family": "custom", "dataset": dataset, "hparams": {}, "byo": byo, "train": {}}


def _schema(conditions: Sequence[Condition]) -> ConditionSchema:
    conds = list(conditions)
    for c in conds:
        if not isinstance(c, (Categorical, Continuous, Vector)):
            raise GenctlError("export_model conditions", got=type(c).__name__,
                              expected="genctl.Categorical, genctl.Continuous or genctl.Vector")
    seen = [c.name for c in conds]
    if len(set(seen)) != len(seen) or not all(n.isidentifier() for n in seen):
        raise GenctlError("export_model conditions", got=f"names {seen}", expected="distinct identifier names")
    return ConditionSchema(conds)


def _label_names(schema: ConditionSchema) -> list[str]:
    first = next((c for c in schema.conditions if isinstance(c, Categorical)), None)
    return list(first.names) if first else []


def _check_nulls(nulls: dict, schema: ConditionSchema) -> None:
    """Null (unconditional) values: known condition names; an int class index, a number, or ``dim`` numbers."""
    for name, value in nulls.items():
        cond = schema.by_name.get(name)
        if cond is None:
            raise GenctlError(f"Diffusion null '{name}'", got="no such condition", expected=f"one of {list(schema.by_name)}")
        size = int(np.size(value)) if isinstance(value, (list, tuple, np.ndarray)) else 1
        ok = (isinstance(value, (int, np.integer)) and value >= 0 if isinstance(cond, Categorical)
              else size == (cond.dim if isinstance(cond, Vector) else 1) and np.all(np.isfinite(np.asarray(value, dtype=float))))
        if not ok:
            what = ("a class index >= 0 (e.g. the extra null class)" if isinstance(cond, Categorical)
                    else f"{cond.dim} numbers" if isinstance(cond, Vector) else "a number")
            raise GenctlError(f"Diffusion null '{name}'", got=repr(value), expected=what)


def _check_evaluate_on(name: str | None, schema: ConditionSchema) -> None:
    if name is None:
        return
    from genctl.data import DATASETS, get_dataset

    if name not in DATASETS:
        raise GenctlError("export_model evaluate_on", got=repr(name), expected=f"one of {sorted(DATASETS)} or None")
    labels = list(get_dataset(name).label_names)
    first = schema.conditions[0] if schema.conditions else None
    if not isinstance(first, Categorical) or list(first.names) != labels:
        raise GenctlError(f"export_model evaluate_on='{name}'", got=f"first condition {first.describe() if first else 'none'}",
                          expected=f"a first Categorical condition with the dataset's labels {labels}")


def _json_kwargs(kwargs: dict | None) -> dict:
    try:
        return json.loads(json.dumps(kwargs or {}))
    except TypeError as exc:
        raise GenctlError("export_model kwargs", got=str(exc), expected="JSON values (numbers, strings, lists, dicts)") from None


def _class_path(module: nn.Module) -> str:
    cls = type(module)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise GenctlError(f"Model class '{cls.__qualname__}'", got=f"defined in {cls.__module__} (not importable)",
                          expected="a class or factory in an importable module",
                          fix="move the model into a .py module and pass factory='module:attr'")
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_rebuild(module: nn.Module, factory: str, kwargs: dict) -> None:
    """``factory(**kwargs)`` must rebuild a module that takes these weights, or the torch backend cannot run."""
    from genctl.families.custom import import_factory

    try:
        rebuilt = import_factory(factory)(**kwargs)
        rebuilt.load_state_dict(module.state_dict(), strict=True)
    except GenctlError:
        raise
    except Exception as exc:
        raise GenctlError(f"Model factory '{factory}' with kwargs {kwargs}", got=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                          expected="a module with the same parameters as the one exported",
                          fix="pass the constructor arguments as kwargs={...}") from None


__all__ = ["Categorical", "Continuous", "Diffusion", "NextToken", "OneShot", "Recurrent", "Vector", "export_model"]
