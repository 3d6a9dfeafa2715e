"""charrnn — a character-level GRU language model steered by a control code (the locale).

The locale enters as a learned embedding added to every input character embedding, so the control
acts at each step and the exported graph needs no special first step.

Exports one graph, ``step(token, hidden, locale) -> (logits, hidden_out)``: one character in, the
next-character logits out; ``hidden_out`` feeds ``hidden`` on the next call (manifest
``feeds_back``). The GRU cell is written out by hand (matmuls, sigmoid, tanh) on the trained
``nn.GRU`` weights, so the ONNX graph is plain ops — no ONNX ``GRU``/``Loop`` — for any runtime.

"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genctl.families.base import GraphDef
from genctl.families.text import SAMPLER_DEFAULTS, TextFamily, condition_name
from genctl.spec import GraphSpec, TensorSpec
from genctl.vocab import BOS, EOS, PAD, SPECIALS

# ------------------------------------------------------------------------------------ model

@dataclass(kw_only=True)
class CharRNNConfig:
    embed_dim: int = 48  # character and locale embedding size
    hidden: int = 128  # GRU hidden size
    layers: int = 2  # stacked GRU layers
    dropout: float = 0.1  # between GRU layers, training only
    lr: float = 3e-3
    batch_size: int = 128
    train_subset: int = 0  # train on this many names only (0 = all); for quick tests


class CharRNNModel(nn.Module):
    def __init__(self, vocab_size: int, n_locales: int, hp: CharRNNConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hp.embed_dim, padding_idx=PAD)
        self.locale = nn.Embedding(n_locales, hp.embed_dim)
        self.gru = nn.GRU(hp.embed_dim, hp.hidden, hp.layers, batch_first=True, dropout=hp.dropout if hp.layers > 1 else 0.0)
        self.head = nn.Linear(hp.hidden, vocab_size)

    def forward(self, tokens: torch.Tensor, locale: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every position: (B, T) tokens -> (B, T, V)."""
        x = self.embed(tokens) + self.locale(locale)[:, None, :]  # (B, T, E)
        out, _ = self.gru(x)  # (B, T, H)
        return self.head(out)


class RNNStep(nn.Module):
    """One step of the trained GRU, written as plain ops: ``(token, hidden, locale) -> (logits, hidden_out)``."""

    def __init__(self, model: CharRNNModel):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, hidden: torch.Tensor, locale: torch.Tensor):
        m = self.model
        x = m.embed(token) + m.locale(locale)  # (B, E)
        states = []
        for layer in range(m.gru.num_layers):
            x = gru_cell(x, hidden[layer], *(getattr(m.gru, f"{w}_l{layer}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            states.append(x)  # (B, H)
        return m.head(x), torch.stack(states)  # (B, V), (layers, B, H)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """torch.nn.GRU's cell (gates r, z, n in that order in the stacked weights)."""
    gi = F.linear(x, w_ih, b_ih)  # (B, 3H)
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class CharRNN(TextFamily):
    name = "charrnn"
    Config = CharRNNConfig
    default_epochs = {"names": 25}

    def build_model(self, config: dict) -> CharRNNModel:
        ds = config["dataset"]
        return CharRNNModel(len(ds["vocab"]), len(ds["label_names"]), CharRNNConfig(**config["hparams"]))

    def graphs(self, model: CharRNNModel, config: dict) -> dict[str, GraphDef]:
        ds, hp = config["dataset"], CharRNNConfig(**config["hparams"])
        vocab, n_loc = len(ds["vocab"]), len(ds["label_names"])
        state, cond = [hp.layers, "batch", hp.hidden], condition_name(config)
        spec = GraphSpec(
            "step",
            inputs=[TensorSpec("token", "int64", ["batch"], "data", high=vocab),
                    TensorSpec("hidden", "float32", state, "state"),
                    TensorSpec(cond, "int64", ["batch"], "condition", high=n_loc)],
            outputs=[TensorSpec("logits", "float32", ["batch", vocab], "output"),
                     TensorSpec("hidden_out", "float32", state, "state")],
            feeds_back={"hidden_out": "hidden"},
            doc="one character + GRU state + locale -> next-character logits and the new state")
        b = 2
        example = {"token": torch.tensor([BOS, len(SPECIALS)]), "hidden": torch.zeros(hp.layers, b, hp.hidden),
                   cond: torch.tensor([0, n_loc - 1])}
        return {"step": GraphDef(RNNStep(model).eval(), example, spec)}

    def sampler_section(self, config: dict) -> dict:
        return {"kind": "autoregressive", "mode": "recurrent", "graphs": {"step": "step"},
                "token_input": "token", "logits_output": "logits", "feeds_back": {"hidden_out": "hidden"},
                "eos": EOS, "defaults": dict(SAMPLER_DEFAULTS)}
