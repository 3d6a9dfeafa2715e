"""custom — a family built from the user's own module and a declared signature (bring your own model).

``genctl.export_model`` (``genctl/byo/``) writes a checkpoint whose config names this family and
carries a ``byo`` section: the import path of a factory that rebuilds the module (``module:attr``,
JSON keyword arguments), the loop shape, the conditions and the loop's declarations. From there the
ordinary path runs unchanged: the exporter, graph and loop parity, the bundle, every backend (the
torch reference rebuilds the module through the factory) and the samplers.

Loop shapes and the graphs wrapped around the user's ``forward``:
- ``oneshot``: ``forward(noise, *conditions) -> sample`` → graph ``sample``.
- ``diffusion``: ``forward(x_t, t, *conditions) -> eps | v`` → the fused ``step`` graph of the
  diffusion family (doubled batch with the user's null condition values, guidance, DDIM update).
- ``autoregressive``: ``forward(tokens, *conditions) -> logits`` ((B, V) or (B, T, V)) → graph
  ``next`` that returns the last position's logits; the sampler recomputes the whole sequence.
- ``recurrent``: ``forward(token, state, *conditions) -> (logits, state)`` with ``state`` a tensor
  or a tuple of tensors (LSTM) → graph ``step`` with the state flattened into inputs and outputs.

Conditions reach ``forward`` as: categorical int64 (B,), continuous float32 (B,), vector float32 (B, dim).
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from genctl.conditions import Categorical, ConditionSchema, Continuous
from genctl.data.names import SPECIALS
from genctl.errors import GenctlError
from genctl.families import schedule
from genctl.families.base import Family, GraphDef
from genctl.spec import GraphSpec, TensorSpec

TEXT_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 0}


def import_factory(path: str):
    """``"package.module:attr"`` → the callable; a one-line error when it cannot be imported."""
    module_name, _, attr = str(path).partition(":")
    if not module_name or not attr:
        raise GenctlError(f"Model factory '{path}'", got="no 'module:attr' form", expected="an import path such as 'mymodels:build'")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise GenctlError(f"Model factory '{path}'", got=f"{type(exc).__name__}: {exc}",
                          expected="an importable module:attr that rebuilds the model",
                          fix=f"install the package or put the folder of '{module_name}' on PYTHONPATH") from None
    return obj


class OneShotGraph(nn.Module):
    """``sample = user(noise, *conditions)`` (a module returning several outputs is refused at export)."""

    def __init__(self, user: nn.Module):
        super().__init__()
        self.user = user

    def forward(self, *args):
        return self.user(*args)


class DiffusionStepGraph(nn.Module):
    """The diffusion family's fused step around a user denoiser: [cond; null] batch, guidance, DDIM."""

    def __init__(self, user: nn.Module, nulls: list[torch.Tensor | None], prediction: str, t_dtype: str, t_scale: float):
        super().__init__()
        self.user, self.n_cond = user, len(nulls)
        self.has_null = [null is not None for null in nulls]  # without a null value a condition stays as given
        for i, null in enumerate(nulls):
            if null is not None:
                self.register_buffer(f"null_{i}", null, persistent=False)
        self.v_prediction, self.float_t, self.t_scale = prediction == "v", t_dtype == "float32", t_scale

    def forward(self, x_t, t, alpha_bar_t, alpha_bar_prev, *rest):
        conds, (guidance_scale, eta, noise) = rest[:self.n_cond], rest[self.n_cond:]
        b = x_t.shape[0]
        doubled = [torch.cat([c, getattr(self, f"null_{i}").expand_as(c) if self.has_null[i] else c])  # (2B, ...)
                   for i, c in enumerate(conds)]
        tt = torch.cat([t, t])
        if self.float_t:
            tt = tt.to(torch.float32) * self.t_scale
        out = self.user(torch.cat([x_t, x_t]), tt, *doubled)  # (2B, C, H, W)
        out = schedule.guided_eps(out[:b], out[b:], guidance_scale)  # linear, so guiding v equals guiding eps
        if self.v_prediction:  # v = sqrt(ab) eps - sqrt(1-ab) x0  =>  eps = sqrt(ab) v + sqrt(1-ab) x_t
            ab = alpha_bar_t.reshape(-1, *([1] * (x_t.dim() - 1)))
            out = ab.sqrt() * out + (1 - ab).clamp(min=0).sqrt() * x_t
        return schedule.ddim_update(x_t, out, alpha_bar_t, alpha_bar_prev, eta, noise)


class NextTokenGraph(nn.Module):
    """Last-position logits (B, V) of ``user(tokens, *conditions)`` (which may return (B, T, V))."""

    def __init__(self, user: nn.Module):
        super().__init__()
        self.user = user

    def forward(self, tokens, *conds):
        logits = self.user(tokens, *conds)
        return logits[:, -1] if logits.dim() == 3 else logits


class RecurrentGraph(nn.Module):
    """``user(token, state, *conditions)`` with a tuple state flattened into separate inputs/outputs."""

    def __init__(self, user: nn.Module, n_state: int, as_tuple: bool):
        super().__init__()
        self.user, self.n_state, self.as_tuple = user, n_state, as_tuple

    def forward(self, token, *rest):
        states, conds = rest[:self.n_state], rest[self.n_state:]
        logits, new = self.user(token, tuple(states) if self.as_tuple else states[0], *conds)
        return (logits, *new) if self.as_tuple else (logits, new)


# ----------------------------------------------------------------------------- specs and examples

def condition_specs(schema: ConditionSchema, nulls: dict | None = None) -> list[TensorSpec]:
    """Graph inputs of the conditions: categorical int64 (batch,), continuous (batch,), vector (batch, dim)."""
    out = []
    for c in schema.conditions:
        if isinstance(c, Categorical):
            null = (nulls or {}).get(c.name)
            high = max(len(c.names), int(null) + 1) if null is not None else len(c.names)
            out.append(TensorSpec(c.name, "int64", ["batch"], "condition", high=high))
        elif isinstance(c, Continuous):
            out.append(TensorSpec(c.name, "float32", ["batch"], "condition"))
        else:
            out.append(TensorSpec(c.name, "float32", ["batch", c.dim], "condition"))
    return out


def condition_examples(schema: ConditionSchema, batch: int = 2) -> dict[str, torch.Tensor]:
    """Example condition tensors spanning each declared range (parity draws between their min and max)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for c in schema.conditions:
        if isinstance(c, Categorical):
            out[c.name] = torch.arange(batch, dtype=torch.int64) % len(c.names)
        elif isinstance(c, Continuous):
            out[c.name] = torch.linspace(c.low, c.high, batch, dtype=torch.float32)
        else:
            vec = torch.randn(batch, c.dim, generator=g)
            out[c.name] = vec.clamp(c.low, c.high) if (c.low > -1e30 and c.high < 1e30) else vec
    return out


def _null_tensor(cond, value) -> torch.Tensor:
    if isinstance(cond, Categorical):
        return torch.tensor(int(value), dtype=torch.int64)
    if isinstance(cond, Continuous):
        return torch.tensor(float(value), dtype=torch.float32)
    return torch.as_tensor(value, dtype=torch.float32).reshape(cond.dim)


def _shape(dims) -> list:
    return [d if isinstance(d, str) else int(d) for d in dims]


# ------------------------------------------------------------------------------------------ family

class Custom(Family):
    """Rebuilds the user's module from ``config["byo"]`` and wraps it for its loop shape."""

    name = "custom"
    sampler = "custom"  # per bundle: the loop shape in config["byo"]["loop"]
    Config = dict

    def build_model(self, config: dict) -> nn.Module:
        byo = config.get("byo")
        if not byo:
            raise GenctlError("Family 'custom'", got="a config without a 'byo' section (genctl train?)",
                              expected="a checkpoint written by genctl.export_model(module, ...)")
        module = import_factory(byo["factory"])(**byo.get("kwargs", {}))
        if not isinstance(module, nn.Module):
            raise GenctlError(f"Model factory '{byo['factory']}'", got=type(module).__name__, expected="a torch.nn.Module")
        return module

    def train(self, model, dataset, config, epochs):
        raise GenctlError("genctl train custom", got="a bring-your-own family", expected="a genctl family",
                          fix="train your model yourself, then genctl.export_model(module, ...)")

    def conditions(self, config: dict) -> ConditionSchema:
        return ConditionSchema.from_json(config["byo"]["conditions"])

    def graphs(self, model: nn.Module, config: dict) -> dict[str, GraphDef]:
        byo = config["byo"]
        return getattr(self, f"_graphs_{byo['loop']}")(model, byo, self.conditions(config))

    def _graphs_oneshot(self, model, byo, schema) -> dict[str, GraphDef]:
        decl, names = byo["decl"], byo["names"]
        noise = TensorSpec(names[0], "float32", ["batch", *_shape(decl["noise_shape"])], "noise")
        out = TensorSpec(decl.get("output", "sample"), "float32", ["batch", *_shape(byo["output_shape"])], "output")
        spec = GraphSpec("sample", inputs=[noise, *condition_specs(schema)], outputs=[out], doc=f"{byo['factory']} one-shot")
        ex = {noise.name: torch.randn(2, *decl["noise_shape"]), **condition_examples(schema)}
        return {"sample": GraphDef(OneShotGraph(model), ex, spec)}

    def _graphs_diffusion(self, model, byo, schema) -> dict[str, GraphDef]:
        decl = byo["decl"]
        shape, T, nulls = list(decl["sample_shape"]), int(decl["timesteps"]), decl.get("null") or {}
        image = ["batch", *shape]
        per_sample = lambda name: TensorSpec(name, "float32", ["batch"], "control")  # noqa: E731
        x_t = TensorSpec("x_t", "float32", image, "state")
        t = TensorSpec("t", "int64", ["batch"], "control", high=T)
        inputs = [x_t, t, per_sample("alpha_bar_t"), per_sample("alpha_bar_prev"), *condition_specs(schema, nulls),
                  per_sample("guidance_scale"), per_sample("eta"), TensorSpec("noise", "float32", image, "noise")]
        spec = GraphSpec("step", inputs=inputs, outputs=[TensorSpec("x_prev", "float32", image, "output")],
                         feeds_back={"x_prev": "x_t"}, doc=f"{byo['factory']} denoiser in genctl's fused CFG + DDIM step")
        null_values = [_null_tensor(c, nulls[c.name]) if c.name in nulls else None for c in schema.conditions]
        module = DiffusionStepGraph(model, null_values, decl.get("prediction", "epsilon"), decl.get("t_dtype", "int64"),
                                    float(decl.get("t_scale", 1.0)))
        ex = {"x_t": torch.randn(2, *shape), "t": torch.tensor([3, T - 1]), "noise": torch.randn(2, *shape),
              "alpha_bar_t": torch.tensor([0.05, 0.95]), "alpha_bar_prev": torch.tensor([0.5, 1.0]),
              "guidance_scale": torch.tensor([0.0, 5.0]), "eta": torch.tensor([0.0, 1.0]), **condition_examples(schema)}
        return {"step": GraphDef(module, ex, spec)}

    def _graphs_autoregressive(self, model, byo, schema) -> dict[str, GraphDef]:
        vocab = len(SPECIALS) + len(byo["decl"]["vocab"])
        context = int(byo["decl"]["context"])
        tokens = TensorSpec("tokens", "int64", ["batch", "seq"], "data", high=vocab)
        spec = GraphSpec("next", inputs=[tokens, *condition_specs(schema)],
                         outputs=[TensorSpec("logits", "float32", ["batch", vocab], "output")],
                         doc=f"{byo['factory']} next-token logits, whole sequence recomputed each step")
        ex = {"tokens": torch.randint(0, vocab, (2, min(3, context))), **condition_examples(schema)}
        return {"next": GraphDef(NextTokenGraph(model), ex, spec, dim_max={"seq": context})}

    def _graphs_recurrent(self, model, byo, schema) -> dict[str, GraphDef]:
        decl = byo["decl"]
        vocab = len(SPECIALS) + len(decl["vocab"])
        states = decl["state"]  # {name: shape with "batch"}
        token = TensorSpec("token", "int64", ["batch"], "data", high=vocab)
        state_in = [TensorSpec(n, "float32", _shape(s), "state") for n, s in states.items()]
        state_out = [TensorSpec(f"{n}_out", "float32", _shape(s), "output") for n, s in states.items()]
        spec = GraphSpec("step", inputs=[token, *state_in, *condition_specs(schema)],
                         outputs=[TensorSpec("logits", "float32", ["batch", vocab], "output"), *state_out],
                         feeds_back={f"{n}_out": n for n in states}, doc=f"{byo['factory']} recurrent step")
        ex = {"token": torch.randint(0, vocab, (2,)), **condition_examples(schema)}
        for s in state_in:
            ex[s.name] = torch.randn(*s.concrete({"batch": 2}))
        return {"step": GraphDef(RecurrentGraph(model, len(states), decl["state_is_tuple"]), ex, spec)}

    def sampler_section(self, config: dict) -> dict:
        byo = config["byo"]
        decl, loop = byo["decl"], byo["loop"]
        if loop == "oneshot":
            return {"kind": "oneshot", "graph": "sample", "defaults": {"temperature": 1.0}}
        if loop == "diffusion":
            return {"kind": "diffusion", "graph": "step", "unconditional": bool(decl.get("null")),
                    "cfg_dropout": None, "loop_tolerance_factor": 1,
                    "defaults": {"steps": min(decl.get("steps", 50), int(decl["timesteps"])), "eta": 0.0, "sampler": "ddim",
                                 "guidance_scale": decl.get("guidance_scale", 3.0) if decl.get("null") else 1.0}}
        if loop == "autoregressive":
            return {"kind": "autoregressive", "mode": "recompute", "graphs": {"next": "next"}, "prompt_input": "tokens",
                    "logits_output": "logits", "defaults": dict(TEXT_DEFAULTS)}
        return {"kind": "autoregressive", "mode": "recurrent", "graphs": {"step": "step"}, "token_input": "token",
                "logits_output": "logits", "feeds_back": {f"{n}_out": n for n in decl["state"]},
                "defaults": dict(TEXT_DEFAULTS)}

    def info(self, config: dict) -> dict:
        byo = config["byo"]
        decl, loop = byo["decl"], byo["loop"]
        base = {"byo": {"factory": byo["factory"], "loop": loop, "forward": byo["names"]}}
        if loop in ("autoregressive", "recurrent"):
            vocab = list(SPECIALS) + list(decl["vocab"])
            text = {"kind": "text", "vocab": vocab, "special_tokens": {"pad": 0, "bos": 1, "eos": 2},
                    "max_len": int(decl["context"]) + 1, "context": int(decl["context"])}
            return {**base, "output": text, **text}
        shape = list(decl["sample_shape"]) if loop == "diffusion" else list(byo["output_shape"])
        kind = "image" if len(shape) == 3 else "array"
        out = {**base, "output": {"kind": kind, "shape": shape, "range": [-1.0, 1.0]}}
        if loop == "diffusion":
            betas = schedule.betas_for(decl.get("schedule", "linear"), int(decl["timesteps"]))
            out.update(prediction=decl.get("prediction", "epsilon"),
                       schedule={"kind": decl.get("schedule", "linear"), "timesteps": int(decl["timesteps"]),
                                 "betas": [float(b) for b in betas]})
        return out


__all__ = ["Custom", "import_factory"]
