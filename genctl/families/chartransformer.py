"""chartransformer — a small decoder-only Transformer over characters, steered by the locale.

Conditioning: a learned locale embedding is *added* to every position's input (token + position +
locale), like a segment embedding. Unlike a prefix token it costs no position of the context and
needs no special case in the KV cache.

Exports two graphs with the KV cache as explicit inputs/outputs, laid out
``(layers, batch, heads, seq, head_dim)``:
- ``prefill(tokens, locale) -> (logits, present_k, present_v)``: the prompt (BOS + prefix), the
  logits of its last position and the cache of every position;
- ``decode(token, past_k, past_v, locale) -> (logits, present_k, present_v)``: one token at
  position ``past`` (read from ``past_k``'s shape inside the graph); the new cache is the old one
  with this token's keys/values appended by ``Concat``;
- ``decode_fixed(token, past_k, past_v, position, locale) -> (logits, present_k, present_v)``, only
  with the hparam ``fixed_cache``: the cache is always ``context`` positions long, the token's
  position is an input, its keys/values are written at that slot (``Where`` on a one-hot of the
  position) and the slots after it are masked, so every step has the same shapes (CUDA graphs,
  TensorRT). The sampler pads the prefill cache to ``context`` once (mode ``kv_fixed``).
Attention is written by hand (matmul, mask from two ``arange``s, softmax) so both graphs are plain
ops — no If/Loop/ScatterND/Trilu — that TensorRT can build.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genctl.families.base import GraphDef
from genctl.families.text import SAMPLER_DEFAULTS, TextFamily, condition_name, context_length
from genctl.spec import GraphSpec, TensorSpec
from genctl.vocab import BOS, EOS, SPECIALS


@dataclass(kw_only=True)
class CharTransformerConfig:
    d_model: int = 64  # width of the residual stream
    heads: int = 4  # attention heads (d_model must divide evenly)
    layers: int = 3  # transformer blocks
    ff_mult: int = 4  # MLP hidden = ff_mult * d_model
    dropout: float = 0.1  # residual/attention dropout, training only
    lr: float = 2e-3
    batch_size: int = 128
    train_subset: int = 0  # train on this many names only (0 = all); for quick tests
    fixed_cache: bool = False  # also export ``decode_fixed`` (context-sized cache) and sample with it


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, hp: CharTransformerConfig):
        super().__init__()
        self.heads, self.head_dim = hp.heads, hp.d_model // hp.heads
        self.ln1, self.ln2 = nn.LayerNorm(hp.d_model), nn.LayerNorm(hp.d_model)
        self.qkv = nn.Linear(hp.d_model, 3 * hp.d_model)
        self.proj = nn.Linear(hp.d_model, hp.d_model)
        self.mlp = nn.Sequential(nn.Linear(hp.d_model, hp.ff_mult * hp.d_model), nn.GELU(),
                                 nn.Linear(hp.ff_mult * hp.d_model, hp.d_model))
        self.drop = nn.Dropout(hp.dropout)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        b, s, _ = t.shape
        return t.view(b, s, self.heads, self.head_dim).transpose(1, 2)  # (B, h, T, hd)

    def forward(self, x, past_k=None, past_v=None, causal: bool = True):
        """x (B, T, C); with a cache, keys/values are ``past`` + these T positions."""
        q, k, v = (self.split(t) for t in self.qkv(self.ln1(x)).chunk(3, dim=2))
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, h, P+T, hd)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, h, T, P+T)
        if causal:
            att = att.masked_fill(causal_mask(q.shape[2], x.device), float("-inf"))
        y = self.drop(F.softmax(att, dim=-1)) @ v  # (B, h, T, hd)
        y = y.transpose(1, 2).reshape(x.shape)  # (B, T, C)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x))), k, v


def causal_mask(t: int, device) -> torch.Tensor:
    """(T, T) True above the diagonal (future positions), built from arange so it exports as Range/Less."""
    i = torch.arange(t, device=device)
    return i[None, :] > i[:, None]


class CharTransformerModel(nn.Module):
    def __init__(self, vocab_size: int, n_locales: int, context: int, hp: CharTransformerConfig):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, hp.d_model)
        self.pos = nn.Embedding(context, hp.d_model)
        self.locale = nn.Embedding(n_locales, hp.d_model)
        self.blocks = nn.ModuleList(Block(hp) for _ in range(hp.layers))
        self.ln_f = nn.LayerNorm(hp.d_model)
        self.head = nn.Linear(hp.d_model, vocab_size)
        self.drop = nn.Dropout(hp.dropout)

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        return self.drop(self.tok(tokens) + self.pos(positions) + self.locale(locale)[:, None, :])  # (B, T, C)

    def run(self, tokens: torch.Tensor, locale: torch.Tensor):
        """All positions of ``tokens`` (B, T): logits (B, T, V) and per-layer keys/values (B, h, T, hd)."""
        x = self.embed(tokens, torch.arange(tokens.shape[1], device=tokens.device)[None, :], locale)
        ks, vs = [], []
        for block in self.blocks:
            x, k, v = block(x)
            ks.append(k)
            vs.append(v)
        return self.head(self.ln_f(x)), ks, vs

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V), for training."""
        return self.run(tokens, locale)[0]


class Prefill(nn.Module):
    """``(tokens, locale) -> (logits of the last position, present_k, present_v)``."""

    def __init__(self, model: CharTransformerModel):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor):
        logits, ks, vs = self.model.run(tokens, locale)
        return logits[:, -1], torch.stack(ks), torch.stack(vs)  # (B, V), (L, B, h, T, hd) x2


class Decode(nn.Module):
    """``(token, past_k, past_v, locale) -> (logits, present_k, present_v)``; position = past length."""

    def __init__(self, model: CharTransformerModel):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, locale: torch.Tensor):
        m = self.model
        # the position as a (B, 1) tensor derived from the cache's shape: a Gather, no guard on P
        position = (token * 0 + past_k.shape[3])[:, None]
        x = m.embed(token[:, None], position, locale)  # (B, 1, C)
        ks, vs = [], []
        for i, block in enumerate(m.blocks):
            x, k, v = block(x, past_k[i], past_v[i], causal=False)  # one query sees the whole cache
            ks.append(k)
            vs.append(v)
        return m.head(m.ln_f(x))[:, 0], torch.stack(ks), torch.stack(vs)  # (B, V), (L, B, h, P+1, hd) x2


class DecodeFixed(nn.Module):
    """``(token, past_k, past_v, position, locale) -> (logits, present_k, present_v)``, cache (L, B, h, S, hd)
    with S = context: slot ``position`` gets this token's keys/values, slots after it are masked."""

    def __init__(self, model: CharTransformerModel):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, position: torch.Tensor,
                locale: torch.Tensor):
        m = self.model
        x = m.embed(token[:, None], position[:, None], locale)  # (B, 1, C)
        slots = torch.arange(past_k.shape[3], device=token.device)[None, :]  # (1, S)
        write = (slots == position[:, None])[:, None, :, None]  # (B, 1, S, 1) this token's slot
        future = (slots > position[:, None])[:, None, None, :]  # (B, 1, 1, S) slots not written yet
        ks, vs = [], []
        for i, block in enumerate(m.blocks):
            h = block.ln1(x)
            q, k, v = (block.split(t) for t in block.qkv(h).chunk(3, dim=2))  # (B, h, 1, hd)
            k, v = torch.where(write, k, past_k[i]), torch.where(write, v, past_v[i])  # (B, h, S, hd)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(block.head_dim))  # (B, h, 1, S)
            att = att.masked_fill(future, float("-inf"))
            y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(x.shape)  # (B, 1, C)
            x = x + block.proj(y)
            x = x + block.mlp(block.ln2(x))
            ks.append(k)
            vs.append(v)
        return m.head(m.ln_f(x))[:, 0], torch.stack(ks), torch.stack(vs)  # (B, V), (L, B, h, S, hd) x2


class CharTransformer(TextFamily):
    name = "chartransformer"
    Config = CharTransformerConfig
    default_epochs = {"names": 30}

    def build_model(self, config: dict) -> CharTransformerModel:
        ds = config["dataset"]
        return CharTransformerModel(len(ds["vocab"]), len(ds["label_names"]), context_length(config),
                                    CharTransformerConfig(**config["hparams"]))

    def graphs(self, model: CharTransformerModel, config: dict) -> dict[str, GraphDef]:
        ds, hp = config["dataset"], CharTransformerConfig(**config["hparams"])
        vocab, n_loc = len(ds["vocab"]), len(ds["label_names"])
        kv = lambda seq: [hp.layers, "batch", hp.heads, seq, hp.d_model // hp.heads]  # noqa: E731
        cond = condition_name(config)  # "locale" for names; a user dataset's own name
        locale = TensorSpec(cond, "int64", ["batch"], "condition", high=n_loc)
        logits = TensorSpec("logits", "float32", ["batch", vocab], "output")
        prefill = GraphSpec(
            "prefill",
            inputs=[TensorSpec("tokens", "int64", ["batch", "seq"], "data", high=vocab), locale],
            outputs=[logits, TensorSpec("present_k", "float32", kv("seq"), "state"),
                     TensorSpec("present_v", "float32", kv("seq"), "state")],
            feeds_back={"present_k": "past_k", "present_v": "past_v"},
            doc="prompt tokens (BOS + prefix) + locale -> logits of the last position and the KV cache")
        decode = GraphSpec(
            "decode",
            inputs=[TensorSpec("token", "int64", ["batch"], "data", high=vocab),
                    TensorSpec("past_k", "float32", kv("past"), "state"),
                    TensorSpec("past_v", "float32", kv("past"), "state"), locale],
            outputs=[logits, TensorSpec("present_k", "float32", kv("present"), "state"),
                     TensorSpec("present_v", "float32", kv("present"), "state")],
            feeds_back={"present_k": "past_k", "present_v": "past_v"},
            doc="one token + KV cache + locale -> next-token logits and the cache with this token appended (present = past + 1)")
        b, t, hd = 2, 3, hp.d_model // hp.heads
        loc = torch.tensor([0, n_loc - 1])
        tokens = torch.tensor([[BOS, len(SPECIALS), len(SPECIALS) + 1]] * b)
        past = torch.randn(hp.layers, b, hp.heads, t, hd)
        graphs = {
            "prefill": GraphDef(Prefill(model).eval(), {"tokens": tokens, cond: loc}, prefill),
            "decode": GraphDef(Decode(model).eval(), {"token": tokens[:, 1], "past_k": past, "past_v": past.clone(),
                                                      cond: loc}, decode),
        }
        if hp.fixed_cache:
            ctx = context_length(config)
            fixed = GraphSpec(
                "decode_fixed",
                inputs=[TensorSpec("token", "int64", ["batch"], "data", high=vocab),
                        TensorSpec("past_k", "float32", kv(ctx), "state"),
                        TensorSpec("past_v", "float32", kv(ctx), "state"),
                        TensorSpec("position", "int64", ["batch"], "data", high=ctx), locale],
                outputs=[logits, TensorSpec("present_k", "float32", kv(ctx), "state"),
                         TensorSpec("present_v", "float32", kv(ctx), "state")],
                feeds_back={"present_k": "past_k", "present_v": "past_v"},
                doc="one token at `position` + context-sized KV cache + locale -> next-token logits and the cache "
                    "with this token written at `position` (same shapes every step)")
            full = torch.randn(hp.layers, b, hp.heads, ctx, hd)
            graphs["decode_fixed"] = GraphDef(DecodeFixed(model).eval(), {
                "token": tokens[:, 1], "past_k": full, "past_v": full.clone(), "position": torch.tensor([t, ctx - 1]),
                cond: loc}, fixed)
        return graphs

    def sampler_section(self, config: dict) -> dict:
        fixed = CharTransformerConfig(**config["hparams"]).fixed_cache
        graphs = {"prefill": "prefill", "decode": "decode", **({"decode_fixed": "decode_fixed"} if fixed else {})}
        return {"kind": "autoregressive", "mode": "kv_fixed" if fixed else "kv_cache", "graphs": graphs,
                "prompt_input": "tokens", "token_input": "token", "logits_output": "logits",
                **({"position_input": "position"} if fixed else {}),
                "feeds_back": {"present_k": "past_k", "present_v": "past_v"}, "eos": EOS,
                "defaults": dict(SAMPLER_DEFAULTS)}
