"""ntm — a neural Turing machine (Graves, Wayne & Danihelka 2014, section 3) steered by a control code.

An LSTM controller reads and writes an external memory of ``N`` rows × ``M`` columns through one
write head and one read head (write, then read, every step). A head addresses the memory in four
steps (paper eqs. 5–9): content (cosine similarity to a key, scaled by a key strength ``beta``,
softmax over rows), interpolation with its previous weighting (gate ``g``), a circular shift by a
learned distribution over ``-s..s``, and sharpening (``gamma >= 1``). A write erases then adds
(eqs. 3–4). Memory starts at ``1e-6`` everywhere; the controller state, the read vector and both
weightings start from learned values. ``memory_rows=0`` removes the memory: the plain LSTM
controller, the same-size baseline that trains and exports exactly the same way.

Two kinds of data:
- bit vectors (``copy``, ``repeat-copy``; ``genctl/data/bits.py``): a token is an 8-bit vector and
  enters the controller as the paper's input vector (8 bits, a start flag, a delimiter flag; a
  fixed table, not learned), together with the repeat count's embedding. After the delimiter the
  model gets its previous output vector as input (``feed_outputs``, the recipe: teacher-forced in
  training, its own greedy pick fed back by the sampler), or zero vectors as in the paper
  (``feed_outputs=False``: the graph keeps a ``phase`` flag in its state and ignores the fed-back
  tokens then). With the heads' initial weightings peaked on row 0, feeding the outputs back is what
  made repeat copy train in minutes and hold on lengths 11–20 (BENCHMARKS.md, NTM). The output layer gives 8 bit logits ``o`` and an end
  marker ``e``; the exported logits *are* the factorised Bernoulli log-probabilities of every
  token, ``logit(vector v) = sum_i log sigma(±o_i) + log sigma(-e)`` and ``logit(EOS) = log sigma(e)``,
  so the recurrent sampler's greedy pick is per-bit thresholding and sampling is per-bit
  Bernoulli — the sampler, bench, build and serve need nothing new. Training: BCE on the bits
  and the end marker of the output phase (``ntm_train.py``).
- characters (``names``): token and locale embeddings, as ``charrnn``; next-character logits.

Exports one graph, ``step(token, h, c, memory, w_read, w_write, read, [phase], <condition>)``,
every state an input and an output fed back (manifest ``feeds_back``), run by the recurrent
sampler from a zero state: a BOS token resets the state to the learned initial state inside the
graph (``torch.where``), so no sampler change is needed for learned initial states.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genctl.conditions import Categorical, ConditionSchema
from genctl.data.bits import CHANNELS, DELIM, DELIM_FLAG, FIRST_VECTOR, input_table, unpack
from genctl.families.base import Family, GraphDef
from genctl.families.text import SAMPLER_DEFAULTS, condition_name
from genctl.spec import GraphSpec, TensorSpec
from genctl.vocab import BOS, EOS, PAD

MEMORY_INIT = 1e-6


@dataclass(kw_only=True)
class NTMConfig:
    memory_rows: int = 64  # N memory locations; 0 = no memory: the plain LSTM controller (the same-size baseline)
    memory_width: int = 20  # M, the width of a memory row
    controller: int = 100  # LSTMCell hidden size
    shift_range: int = 1  # a head may move its focus by -s..s rows per step
    embed_dim: int = 32  # names: character and locale embedding size; bits: the repeat count's embedding is 8
    feed_outputs: bool | None = None  # bits: after the delimiter the input is the previous output vector (None: True for new bits models)
    lr: float = 3e-3  # 3x the paper-style 1e-3: fewer iterations to the same bit error (/work research, copy, 150 s runs)
    lr_final: float | None = 1e-4  # cosine decay to this over the time budget; None = constant
    batch_size: int = 32
    clip: float = 10.0  # gradient norm clipping
    max_seconds: float = 0.0  # training time budget, compile time included (0 = the dataset's recipe: copy 600, repeat-copy 600, names 540)
    iters_per_epoch: int = 1000  # bits: an epoch is this many random batches (training stops at epochs x this or max_seconds)
    curriculum: int = 0  # bits: train on lengths up to this first, one longer each time the recent bit error < curriculum_error (0 = off)
    curriculum_error: float = 0.01
    compile: bool = True  # torch.compile the step for training (eager if compiling fails)
    threads: int = 1  # torch threads while training: the per-step ops are small, a second thread only adds wake-ups (0 = leave)
    curve_every: int = 250  # iterations per learning-curve point (checkpoint metrics)
    train_subset: int = 0  # names: train on this many names only (0 = all); for quick tests


# ------------------------------------------------------------------------------------ model

def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log sigma(x) as -softplus(-x): torch's own log_sigmoid (and ``**`` with a tensor exponent) split even a
    (1, 8) tensor over threads on CPU and cost ~2 ms per call at batch 1 on a busy 2-core box."""
    return -F.softplus(-x)


def circular_shift(w: torch.Tensor, d: int) -> torch.Tensor:
    """``out[:, i] = w[:, (i - d) mod N]`` as slices + concat (plain ops for any runtime)."""
    d = d % w.shape[1]
    return w if d == 0 else torch.cat([w[:, -d:], w[:, :-d]], dim=1)


def address(params: torch.Tensor, memory: torch.Tensor, w_prev: torch.Tensor, shift_range: int) -> torch.Tensor:
    """A head's new weighting (B, N) from its controller outputs (paper section 3.3)."""
    m = memory.shape[2]
    key, beta, gate, shift, gamma = params.split([m, 1, 1, 2 * shift_range + 1, 1], dim=1)
    norms = memory.norm(dim=2) * key.norm(dim=1, keepdim=True)  # (B, N)
    similarity = (memory @ key.unsqueeze(2)).squeeze(2) / (norms + 1e-8)  # cosine, eq. 6
    w = torch.softmax(F.softplus(beta) * similarity, dim=1)  # content weighting, eq. 5
    g = torch.sigmoid(gate)
    w = g * w + (1 - g) * w_prev  # interpolation, eq. 7
    s = torch.softmax(shift, dim=1)
    w = sum(s[:, i:i + 1] * circular_shift(w, i - shift_range) for i in range(2 * shift_range + 1))  # eq. 8
    w = w.clamp(min=1e-30)  # >= 0 already in a real loop; no 0 ** gamma (finite gradients)
    w = torch.exp((1 + F.softplus(gamma)) * torch.log(w / w.amax(dim=1, keepdim=True)))  # sharpening w ** gamma, eq. 9;
    return w / w.sum(dim=1, keepdim=True)  # scaled by the max first: the largest term is 1, no overflow, no 0 / 0


class NTMCell(nn.Module):
    """One step: ``(x, state) -> (y, state)``; state ``(h, c, memory, w_read, w_write, read)`` or ``(h, c)``."""

    def __init__(self, in_dim: int, out_dim: int, hp: NTMConfig):
        super().__init__()
        n, m, hidden = hp.memory_rows, hp.memory_width, hp.controller
        self.rows, self.width, self.shift_range = n, m, hp.shift_range
        self.lstm = nn.LSTMCell(in_dim + (m if n else 0), hidden)
        self.out = nn.Linear(hidden + (m if n else 0), out_dim)
        self.h0, self.c0 = nn.Parameter(torch.zeros(hidden)), nn.Parameter(torch.zeros(hidden))
        if n:
            head = m + 3 + 2 * hp.shift_range + 1  # key, beta, gate, shift, gamma
            self.read_head = nn.Linear(hidden, head)
            self.write_head = nn.Linear(hidden, head + 2 * m)  # + erase, add
            self.read0 = nn.Parameter(torch.randn(m) * 0.01)
            # Initial read / write weighting logits, both heads peaked on row 0 (softmax ~0.9995 there; still learned):
            # with a constant memory, content addressing is uniform and a uniform (or diffuse) start stays diffuse under
            # shift and sharpening, so the heads cannot pick a row. Peaked, repeat copy went from ~27% bit error at
            # 200 s to <1% at 60 s on the research runs (BENCHMARKS.md, NTM).
            w0 = torch.zeros(2, n)
            w0[:, 0] = 10.0
            self.w0 = nn.Parameter(w0)
            self.register_buffer("memory0", torch.full((n, m), MEMORY_INIT), persistent=False)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        h, c = self.h0.expand(batch, -1), self.c0.expand(batch, -1)
        if not self.rows:
            return h, c
        w_read, w_write = (torch.softmax(self.w0[i], dim=0) for i in (0, 1))  # row by row: a (2, N) softmax is threaded
        return (h, c, self.memory0.expand(batch, -1, -1), w_read.expand(batch, -1), w_write.expand(batch, -1),
                self.read0.expand(batch, -1))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]):
        if not self.rows:
            h, c = self.lstm(x, state)
            return self.out(h), (h, c)
        h, c, memory, w_read, w_write, read = state
        h, c = self.lstm(torch.cat([x, read], dim=1), (h, c))  # (B, H)
        params = self.write_head(h)
        head, erase, add = params.split([params.shape[1] - 2 * self.width, self.width, self.width], dim=1)
        w_write = address(head, memory, w_write, self.shift_range)  # (B, N)
        ww = w_write.unsqueeze(2)  # (B, N, 1)
        memory = memory * (1 - ww * torch.sigmoid(erase).unsqueeze(1)) + ww * torch.tanh(add).unsqueeze(1)  # eqs. 3-4
        w_read = address(self.read_head(h), memory, w_read, self.shift_range)
        read = (w_read.unsqueeze(1) @ memory).squeeze(1)  # (B, M), eq. 2
        return self.out(torch.cat([h, read], dim=1)), (h, c, memory, w_read, w_write, read)


class NTMModel(nn.Module):
    """Token in, logits out, one step at a time (``step``) or over a teacher-forced sequence (``forward``)."""

    def __init__(self, vocab_size: int, n_conditions: int, hp: NTMConfig, bits: bool):
        super().__init__()
        self.bits, self.vocab_size = bits, vocab_size
        self.feed_outputs = bool(hp.feed_outputs)  # None (checkpoints from before the option): zeros, as they trained
        if bits:
            width = CHANNELS - 2
            self.register_buffer("table", torch.from_numpy(input_table(vocab_size, width)), persistent=False)
            self.register_buffer("vector_bits", torch.from_numpy(unpack(np.arange(2 ** width), width)), persistent=False)
            self.condition = nn.Embedding(n_conditions, 8)
            self.cell = NTMCell(CHANNELS + 8, width + 1, hp)
        else:
            self.embed = nn.Embedding(vocab_size, hp.embed_dim, padding_idx=PAD)
            self.condition = nn.Embedding(n_conditions, hp.embed_dim)
            self.cell = NTMCell(hp.embed_dim, vocab_size, hp)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        state = self.cell.initial_state(batch)
        return (*state, torch.zeros(batch, 1)) if self.bits else state

    def step(self, token: torch.Tensor, state: tuple[torch.Tensor, ...], condition: torch.Tensor):
        """``(y (B, out), state)``: raw outputs (bits: 8 bit logits + end marker; names: logits)."""
        if not self.bits:
            y, state = self.cell(self.embed(token) + self.condition(condition), state)
            return y, state
        *state, phase = state
        vec = F.embedding(token, self.table)  # (B, 10) the paper's input vector
        x = torch.cat([vec if self.feed_outputs else vec * (1 - phase), self.condition(condition)], dim=1)
        phase = torch.maximum(phase, vec[:, DELIM_FLAG:DELIM_FLAG + 1])
        y, state = self.cell(x, tuple(state))
        return y, (*state, phase)

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor, step=None) -> torch.Tensor:
        """Teacher-forced raw outputs (B, T, out) from the learned initial state (``step``: a compiled ``self.step``)."""
        step = step or self.step
        state = tuple(s.contiguous() for s in self.initial_state(tokens.shape[0]))  # one stride for every step:
        columns, ys = tokens.t().contiguous(), []  # a compiled step is not recompiled per sequence length
        for t in range(tokens.shape[1]):
            y, state = step(columns[t], state, condition)
            ys.append(y)
        return torch.stack(ys, dim=1)

    def token_logits(self, y: torch.Tensor) -> torch.Tensor:
        """Bits: (B, 9) -> (B, V) log-probabilities of every token under independent Bernoulli bits and end marker."""
        if not self.bits:
            return y
        width = self.vector_bits.shape[1]
        pos, neg = log_sigmoid(y[:, :width]), log_sigmoid(-y[:, :width])  # (B, 8)
        end, go = log_sigmoid(y[:, width:]), log_sigmoid(-y[:, width:])  # (B, 1)
        vectors = pos @ self.vector_bits.T + neg @ (1 - self.vector_bits).T + go  # (B, 256)
        floor = torch.minimum(pos, neg).sum(dim=1, keepdim=True) + go  # PAD / BOS / DELIM: never picked (banned), kept finite
        parts = {PAD: floor, BOS: floor, EOS: end, DELIM: floor}
        return torch.cat([parts[i] for i in range(FIRST_VECTOR)] + [vectors], dim=1)


class NTMStep(nn.Module):
    """``(token, *state, condition) -> (logits, *state_out)``; a BOS token restarts from the learned initial state."""

    def __init__(self, model: NTMModel):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, *rest: torch.Tensor):
        *state, condition = rest
        reset = token == BOS  # (B,)
        init = self.model.initial_state(token.shape[0])
        state = tuple(torch.where(reset.reshape(-1, *[1] * (s.dim() - 1)), i, s) for s, i in zip(state, init))
        y, state = self.model.step(token, state, condition)
        return (self.model.token_logits(y), *state)


def state_names(hp: NTMConfig, bits: bool) -> list[str]:
    names = ["h", "c"] + (["memory", "w_read", "w_write", "read"] if hp.memory_rows else [])
    return names + (["phase"] if bits else [])


def state_shapes(hp: NTMConfig, bits: bool) -> dict[str, list]:
    n, m, hidden = hp.memory_rows, hp.memory_width, hp.controller
    shapes = {"h": ["batch", hidden], "c": ["batch", hidden], "memory": ["batch", n, m], "w_read": ["batch", n],
              "w_write": ["batch", n], "read": ["batch", m], "phase": ["batch", 1]}
    return {k: shapes[k] for k in state_names(hp, bits)}


# ------------------------------------------------------------------------------------ family

def is_bits(config: dict) -> bool:
    return config["dataset"].get("kind") == "bits"


def max_input(config: dict) -> int:
    """The longest input a bits model takes: one memory row per vector (64 for the memoryless baseline)."""
    return int(config["hparams"]["memory_rows"] or 64)


class NTM(Family):
    name = "ntm"
    sampler = "autoregressive"
    data_kind = ("bits", "text")
    label_conditioned = False  # copy has one repeat count
    condition_name = "repeats"
    Config = NTMConfig
    default_epochs = {"copy": 1000, "repeat-copy": 1000, "names": 1000}  # the time budget (max_seconds) ends training first

    def make_config(self, dataset_info: dict, overrides: dict | None = None) -> dict:
        config = super().make_config(dataset_info, overrides)
        if config["hparams"]["feed_outputs"] is None:  # the recipe for bit data; no meaning for names
            config["hparams"]["feed_outputs"] = dataset_info.get("kind") == "bits"
        return config

    def build_model(self, config: dict) -> NTMModel:
        ds = config["dataset"]
        return NTMModel(len(ds["vocab"]), len(ds["label_names"]), NTMConfig(**config["hparams"]), is_bits(config))

    def conditions(self, config: dict) -> ConditionSchema:
        return ConditionSchema([Categorical(name=condition_name(config), names=tuple(config["dataset"]["label_names"]))])

    def train(self, model: NTMModel, dataset, config: dict, epochs: int) -> dict:
        from genctl.families.ntm_train import train_bits, train_text

        threads, wanted = torch.get_num_threads(), int(config["hparams"].get("threads", 1))
        if wanted:
            torch.set_num_threads(wanted)
        try:
            return (train_bits if is_bits(config) else train_text)(model, dataset, config, epochs)
        finally:
            torch.set_num_threads(threads)

    def info(self, config: dict) -> dict:
        ds = config["dataset"]
        if not is_bits(config):
            context = int(ds["max_len"]) - 1
            text = {"kind": "text", "vocab": ds["vocab"], "special_tokens": ds["special_tokens"], "max_len": ds["max_len"],
                    "context": context}
            return {"output": text, **text}
        longest, repeats = max_input(config), int(ds["max_repeats"])
        bits = {"width": int(ds["width"]), "max_input": longest, "random_input": int(ds["lengths"][1])}
        return {"output": {"kind": "text", "format": "bits", "width": bits["width"]}, "vocab": ds["vocab"], "special_tokens": ds["special_tokens"],
                "context": 2 + longest + longest * repeats, "bits": bits, "memory": [config["hparams"]["memory_rows"],
                                                                                    config["hparams"]["memory_width"]]}

    def graphs(self, model: NTMModel, config: dict) -> dict[str, GraphDef]:
        ds, hp, bits = config["dataset"], NTMConfig(**config["hparams"]), is_bits(config)
        vocab, n_cond, cond = len(ds["vocab"]), len(ds["label_names"]), condition_name(config)
        shapes = state_shapes(hp, bits)
        spec = GraphSpec(
            "step",
            inputs=[TensorSpec("token", "int64", ["batch"], "data", high=vocab),
                    *[TensorSpec(k, "float32", s, "state") for k, s in shapes.items()],
                    TensorSpec(cond, "int64", ["batch"], "condition", high=n_cond)],
            outputs=[TensorSpec("logits", "float32", ["batch", vocab], "output"),
                     *[TensorSpec(f"{k}_out", "float32", s, "state") for k, s in shapes.items()]],
            feeds_back={f"{k}_out": k for k in shapes},
            doc="one token + controller state, memory, head weightings and read vector + condition -> next-token logits and the new state")
        b = 2
        example = {"token": torch.tensor([BOS, FIRST_VECTOR + 5 if bits else 3]),
                   **{k: torch.zeros([b if d == "batch" else d for d in s]) for k, s in shapes.items()},
                   cond: torch.tensor([0, n_cond - 1])}
        return {"step": GraphDef(NTMStep(model).eval(), example, spec)}

    def sampler_section(self, config: dict) -> dict:
        shapes = state_shapes(NTMConfig(**config["hparams"]), is_bits(config))
        section = {"kind": "autoregressive", "mode": "recurrent", "graphs": {"step": "step"}, "token_input": "token",
                   "logits_output": "logits", "feeds_back": {f"{k}_out": k for k in shapes}, "eos": EOS,
                   "defaults": dict(SAMPLER_DEFAULTS)}
        if is_bits(config):  # the prompt is BOS + the input vectors + DELIM; greedy = per-bit thresholding
            section.update(prompt_suffix=[DELIM], defaults={**SAMPLER_DEFAULTS, "temperature": 0.0})
        return section


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
