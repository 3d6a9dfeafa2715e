"""Check a user's ``forward`` against its declared loop shape before any export work.

Two checks, each a one-line GenctlError naming the argument: the parameter list (how many
positional arguments, which one is missing or extra) and a trial call on example tensors (what the
module returned vs what the loop needs).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from genctl.byo.loops import Diffusion, NextToken, OneShot, Recurrent
from genctl.conditions import ConditionSchema
from genctl.errors import GenctlError
from genctl.families.custom import condition_examples

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def condition_inputs(schema: ConditionSchema) -> list[tuple[str, str]]:
    """``(condition, input)`` per argument the conditions feed, in order: one each, except a text
    condition with ``feed="states"``, which feeds ``NAME_states`` and ``NAME_mask``."""
    return [(c.name, spec.name) for c in schema.conditions for spec in c.specs()]


def check_forward(module: nn.Module, loop, schema: ConditionSchema) -> list[str]:
    """The user's names of the arguments genctl feeds, in order; an error names a missing or extra one."""
    inputs = condition_inputs(schema)
    wanted = [*loop.leading, *(name for _, name in inputs)]
    shown = f"forward({', '.join(wanted)})"
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return list(wanted)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return list(wanted)
    positional = [p for p in params if p.kind in POSITIONAL]
    where = f"{type(module).__name__}.forward"
    for i, role in enumerate(wanted):
        if i >= len(positional):
            what = f"the {loop.kind} input '{role}'"
            if i >= len(loop.leading):
                cond = inputs[i - len(loop.leading)][0]
                what = f"condition '{cond}'" if cond == role else f"condition '{cond}' input '{role}'"
            raise GenctlError(f"Argument {i + 1} of {where}", got=f"no parameter for {what}",
                              expected=f"{shown} (loop '{loop.kind}', conditions in declared order)")
    for p in positional[len(wanted):]:
        if p.default is inspect.Parameter.empty:
            raise GenctlError(f"Argument '{p.name}' of {where}", got="a required parameter genctl has no value for",
                              expected=f"{shown}: declare it as a condition or give it a default")
    return [p.name for p in positional[:len(loop.leading)]]


def example_inputs(loop, schema: ConditionSchema, batch: int = 2, feeds: dict | None = None, tokens: int | None = None) -> list:
    """The positional arguments genctl will feed, at batch 2 (``feeds``: condition inputs to use instead of the
    examples; ``tokens``: a NextToken sequence length other than 3)."""
    conds = list({**condition_examples(schema, batch), **(feeds or {})}.values())
    if isinstance(loop, OneShot):
        return [torch.randn(batch, *loop.noise_shape), *conds]
    if isinstance(loop, Diffusion):
        t = torch.tensor([3, loop.timesteps - 1])
        t = t.to(torch.float32) * loop.t_scale if loop.t_dtype == "float32" else t
        return [torch.randn(batch, *loop.sample_shape), t, *conds]
    if isinstance(loop, NextToken):
        vocab = len(loop.tokens()[0])  # genctl's 3 specials + the characters, or the model's own vocabulary
        ids = torch.randint(0, vocab, (batch, tokens or min(3, loop.context)), generator=torch.Generator().manual_seed(0))
        ids[:, -1] = vocab - 1  # the largest token id too
        return [ids, *conds]
    states = [torch.zeros([batch if d == "batch" else d for d in s]) for s in loop.states().values()]
    state = tuple(states) if isinstance(loop.state, dict) else states[0]
    return [torch.zeros(batch, dtype=torch.int64), state, *conds]


@torch.inference_mode()
def trial_call(module: nn.Module, loop, schema: ConditionSchema, names: list[str]) -> list[int] | None:
    """Call ``forward`` once; check what it returned. Returns a one-shot sample's shape (no batch axis)."""
    args = example_inputs(loop, schema)
    arg_names = [*names, *(name for _, name in condition_inputs(schema))]
    shown = ", ".join(f"{n}: {_describe(a)}" for n, a in zip(arg_names, args))
    where = f"{type(module).__name__}.forward"
    try:
        out = module.eval()(*args)
    except Exception as exc:
        raise GenctlError(f"Trial call {where}({shown})", got=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                          expected="a forward that accepts these tensors (conditions: categorical int64 (B,), "
                                   "continuous float32 (B,), vector float32 (B, dim), text pooled float32 (B, dim) "
                                   "or states float32 (B, L, dim) + mask int64 (B, L))") from None
    shape = _check_output(out, loop, where)
    probe_ranges(module, loop, schema)
    return shape


def range_probes(loop, schema: ConditionSchema, batch: int = 2) -> list[tuple[str, str, dict, int | None]]:
    """``(subject, expected, condition feeds, tokens)`` per range edge the export's parity (or a user) will reach:
    each categorical's largest index, each diffusion null, a NextToken ``context`` of tokens. Continuous and
    vector examples already span their declared ranges."""
    probes = []
    nulls = loop.null if isinstance(loop, Diffusion) else {}
    for c in schema.conditions:
        edge = c.edge_feeds(batch)
        if edge is not None:
            what, expected, feeds = edge
            probes.append((f"Condition '{c.name}' {what}", expected, {k: torch.from_numpy(v) for k, v in feeds.items()}, None))
        if c.name in nulls:
            try:
                row = {k: torch.from_numpy(np.asarray(v)) for k, v in c.null_feeds(nulls[c.name]).items()}
            except Exception:  # noqa: BLE001  (a null made by the encode stage, e.g. a text prompt's: checked at export)
                continue
            feeds = {k: v.expand(batch, *v.shape).contiguous() for k, v in row.items()}
            hint = f" (a null class needs a row of its own, e.g. nn.Embedding({len(c.classes) + 1}, ...))" if c.classes else ""
            probes.append((f"Diffusion null '{c.name}' = {nulls[c.name]!r}", f"a null value the model takes{hint}", feeds, None))
    if isinstance(loop, NextToken) and loop.context > 3:
        probes.append((f"NextToken context={loop.context} ({loop.context} tokens)",
                       f"a model that takes sequences of up to {loop.context} tokens (its positions)", {}, loop.context))
    return probes


@torch.inference_mode()
def probe_ranges(module: nn.Module, loop, schema: ConditionSchema) -> None:
    """Call ``forward`` at every range edge (``range_probes``); the first that fails is one line naming it."""
    where = f"{type(module).__name__}.forward"
    for subject, expected, feeds, tokens in range_probes(loop, schema):
        try:
            module(*example_inputs(loop, schema, feeds=feeds, tokens=tokens))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise GenctlError(subject, got=f"{type(exc).__name__}: {first} from {where}", expected=expected,
                              fix="declare what the model was built for, or build the model for what is declared") from None


def _check_output(out, loop, where: str) -> list[int] | None:
    if isinstance(loop, Recurrent):
        return _check_recurrent(out, loop, where)
    if not isinstance(out, torch.Tensor):
        raise GenctlError(f"Output of {where}", got=_describe(out), expected=f"one tensor for loop '{loop.kind}'")
    if out.dtype != torch.float32 or out.shape[0] != 2:
        raise GenctlError(f"Output of {where}", got=_describe(out), expected="float32 with the batch (2) first")
    if isinstance(loop, Diffusion) and list(out.shape[1:]) != list(loop.sample_shape):
        raise GenctlError(f"Output of {where}", got=_describe(out),
                          expected=f"{loop.prediction} shaped like x_t (2, {', '.join(map(str, loop.sample_shape))})")
    if isinstance(loop, NextToken):
        _check_logits(out, loop, where, ranks=(2, 3))
    return [int(d) for d in out.shape[1:]] if isinstance(loop, OneShot) else None


def _check_logits(logits, loop, where: str, ranks: tuple[int, ...]) -> None:
    vocab = len(loop.tokens()[0])
    what = f"the {vocab} tokens of the declared vocabulary" if loop.bos is not None else f"3 special tokens + {len(loop.vocab)} characters"
    if not isinstance(logits, torch.Tensor) or logits.dim() not in ranks or logits.shape[-1] != vocab:
        raise GenctlError(f"Logits of {where}", got=_describe(logits),
                          expected=f"(B, {vocab}){' or (B, T, ' + str(vocab) + ')' if 3 in ranks else ''}: {what}")


def _check_recurrent(out, loop: Recurrent, where: str) -> None:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise GenctlError(f"Output of {where}", got=_describe(out), expected="a pair (logits, state)")
    logits, state = out
    _check_logits(logits, loop, where, ranks=(2,))
    declared = loop.states()
    states = list(state) if isinstance(loop.state, dict) else [state]
    if isinstance(loop.state, dict) != isinstance(state, (tuple, list)) or len(states) != len(declared):
        want_state = f"a tuple of {len(declared)} tensors" if isinstance(loop.state, dict) else "one tensor"
        raise GenctlError(f"State returned by {where}", got=_describe(state),
                          expected=f"{want_state} as declared ({list(declared)})")
    for (name, shape), value in zip(declared.items(), states):
        want = [2 if d == "batch" else d for d in shape]
        if not isinstance(value, torch.Tensor) or list(value.shape) != want or value.dtype != torch.float32:
            raise GenctlError(f"State '{name}' returned by {where}", got=_describe(value), expected=f"float32 {tuple(want)}")
    return None


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[{', '.join(_describe(v) for v in value)}]"
    return type(value).__name__
