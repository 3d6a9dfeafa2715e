"""Autoregressive sampling: prompt once, then one token per step with the state fed back.

Four modes, named by the manifest's ``sampler.mode``:
- ``recurrent`` (charrnn): the ``step`` graph eats BOS and the prefix one token at a time, then
  every generated token; ``hidden_out`` feeds ``hidden``.
- ``kv_cache`` (chartransformer): ``prefill`` runs BOS + prefix in one call, then ``decode`` runs
  one token per step; ``present_k/v`` feed ``past_k/v``.
- ``kv_fixed`` (chartransformer with ``fixed_cache``): ``prefill``, its cache padded once to the
  context, then ``decode_fixed`` with the position as an input and the full-size cache written in
  place: every step has the same shapes, so it can be captured (CUDA graphs, TensorRT).
- ``recompute`` (bring-your-own next-token models without a cache): the ``next`` graph gets the
  whole sequence so far each step and returns the last position's logits.

Every condition input of the graph (one or several, any kind) is fed from the request's rows.

Per step: one uniform number per sequence is drawn from the seeded ``rng`` and a token is picked
by inverse CDF after temperature / top-k / top-p. The draw is the only randomness, so torch and
ONNX Runtime give the same text when their logits agree. By default the logits come back to the
host and numpy picks (``pick``); a backend that offers ``fused_pick`` (``onnxruntime+graphpick``)
runs the same pick as ONNX nodes appended to the step graph (``graph_pick``), fed the same draws,
so one call per token returns the token and the logits never leave the device.
A sequence stops at EOS or after ``max_new_tokens``; finished rows are dropped from the batch
(and from the state), so a batch of mixed locales and lengths costs only the live rows.
BOS, EOS and PAD are the model's own ids (the manifest's ``info.special_tokens``: genctl's 1, 2, 0
for its families, a bring-your-own model's declared ids otherwise); any other special token there
(``ntm``'s delimiter) is never picked either.

Bit-vector models (``info.bits``: ``ntm`` on copy / repeat copy) take the prefix as 8-bit vectors
separated by spaces (``genctl.vocab.check_bits``) and, without one, a random input of
``info.bits.random_input`` vectors per sequence drawn from the request's seeded rng; the section's
``prompt_suffix`` tokens (the delimiter) follow the prefix; texts read ``input | output``.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from genctl.conditions import ConditionRows, Control
from genctl.errors import ConditionError
from genctl.runtime.backends.base import Backend
from genctl.runtime.samplers.base import Request, Sampler, Samples, condition_feeds, split
from genctl.runtime.samplers.graph_pick import TOKEN, mode_for
from genctl.vocab import check_bits, check_text, decode, join_bits, special_ids


class AutoregressiveSampler(Sampler):
    kind = "autoregressive"
    label = "Text"
    inputs = ("prefix",)
    controls = [
        Control("temperature", float, 1.0, low=0.0, help="softmax temperature (0 = greedy)"),
        Control("top_k", int, 0, low=0, help="sample among the k most likely tokens (0 = all)"),
        Control("top_p", float, 1.0, low=0.0, high=1.0, low_open=True,
                help="sample among the fewest most likely tokens holding this much probability (nucleus; 1 = all)"),
        Control("max_new_tokens", int, 0, low=0, help="new tokens per sequence, EOS included (0 = until the context is full)"),
    ]

    def __init__(self, bundle):
        super().__init__(bundle)
        self.vocab = list(bundle.info["vocab"])
        self.context = int(bundle.info["context"])
        self.specials = special_ids(bundle.info.get("special_tokens"))
        self.bos, self.eos, self.pad = self.specials["bos"], self.specials["eos"], self.specials["pad"]
        others = {int(v) for k, v in (bundle.info.get("special_tokens") or {}).items() if k not in self.specials}
        self.banned = sorted({self.pad, self.bos, *others} - {self.eos})  # never picked (a pad that is the EOS stays allowed)
        self.bits = bundle.info.get("bits")  # {"width", "max_input", "random_input"}: prompts are bit vectors
        self.suffix = [int(t) for t in self.section.get("prompt_suffix", [])]  # after the prefix (ntm: the delimiter)

    def sample_batch(self, backend: Backend, requests: list[Request]) -> list[Samples]:
        prefix = requests[0].inputs.get("prefix") or ""  # batch_key: one prompt per batch
        prefix_ids = self.encode_prefix(prefix)
        max_new = np.concatenate([np.full(r.total, self.budget(r.controls["max_new_tokens"], self.prompt_length(prefix_ids)))
                                  for r in requests])  # (N,) each row's own token budget
        conds = condition_feeds(self.bundle.conditions, requests)  # name -> (N, ...) one value per sequence
        body = self.prompt_body(prefix_ids, requests)  # (N, len(prefix)): the prefix, or random bit vectors
        total = len(body)
        prompt = np.concatenate([np.full((total, 1), self.bos), body, np.tile(self.suffix, (total, 1))], axis=1).astype(np.int64)
        stepper = STEPPERS[self.section.get("mode", "recurrent")](backend, self.section)
        generated, meta = self.loop(stepper, prompt, conds, requests, max_new, allow_eos_first=bool(prefix_ids) or bool(self.bits))
        return [self.package(r.rows, r.n, prefix, body[s].tolist(), generated[s], meta)
                for r, s in zip(requests, split(requests))]

    def check(self, controls: dict[str, Any], inputs: dict[str, Any]) -> None:
        prefix = inputs.get("prefix") or ""
        self.budget(controls["max_new_tokens"], self.prompt_length(self.encode_prefix(prefix)))

    def encode_prefix(self, prefix: str) -> list[int]:
        """The prefix's token ids: characters, or bit vectors for a bits model."""
        if self.bits:
            return check_bits(prefix, self.vocab, int(self.bits["width"]), int(self.bits["max_input"]))
        return check_text(prefix, self.vocab, specials=self.specials)

    def prompt_length(self, prefix_ids: list[int]) -> int:
        """Prompt tokens after BOS: the prefix (a bits model's random input without one) and the suffix."""
        body = len(prefix_ids) or (int(self.bits["random_input"]) if self.bits else 0)
        return body + len(self.suffix)

    def prompt_body(self, prefix_ids: list[int], requests: list[Request]) -> np.ndarray:
        """(N, L) prompt tokens after BOS: the prefix on every row; for a bits model without a prefix,
        random vectors per row, drawn from each request's own rng (before its token draws)."""
        if prefix_ids or not self.bits:
            return np.tile(np.array(prefix_ids, dtype=np.int64), (sum(r.total for r in requests), 1))
        first, count = self.vocab.index("0" * int(self.bits["width"])), 2 ** int(self.bits["width"])
        return np.concatenate([first + r.rng.integers(0, count, size=(r.total, int(self.bits["random_input"])))
                               for r in requests]).astype(np.int64)

    def batch_key(self, request: Request):
        return request.inputs.get("prefix") or ""  # temperature, top-k/p and max_new_tokens are per row

    def budget(self, max_new_tokens: int, prefix_len: int) -> int:
        """New tokens allowed: BOS + prefix + all but the last new token must fit the context."""
        room = self.context - prefix_len
        if room < 1:
            raise ConditionError("--prefix", got=f"{prefix_len} characters",
                                 expected=f"at most {self.context - 1} (the model's context is {self.context} tokens with BOS)")
        if max_new_tokens > room:
            raise ConditionError("--max-new-tokens", got=max_new_tokens,
                                 expected=f"<= {room}: the model's context is {self.context} tokens (BOS + prefix "
                                          f"of {prefix_len} + new tokens but the last)")
        return max_new_tokens or room

    def loop(self, stepper, prompt: np.ndarray, conds: dict[str, np.ndarray], requests: list[Request], max_new: np.ndarray,
             allow_eos_first: bool) -> tuple[list[list[int]], dict]:
        """Generate up to ``max_new[row]`` tokens per row; returns token lists (EOS kept) and timing meta.

        A row leaves the batch (and the state) at EOS or at its own budget, so requests with
        different ``max_new_tokens`` share the loop and finished rows cost nothing. The first
        token is picked on the host from the prompt's logits; later ones in the step graph when
        the backend offers it (``Backend.fused_pick``), from the same uniforms, so the same tokens.
        """
        total = len(prompt)
        owner = np.repeat(np.arange(len(requests)), [r.total for r in requests])  # request index per row
        controls = {k: np.repeat([r.controls[k] for r in requests], [r.total for r in requests]).astype(dtype)
                    for k, dtype in (("temperature", np.float64), ("top_k", np.int64), ("top_p", np.float64))}
        generated: list[list[int]] = [[] for _ in range(total)]
        active = np.arange(total)
        start = time.perf_counter()
        logits = stepper.start(prompt, conds)
        ttft, inter, last = 0.0, [], start
        for step in range(int(max_new.max())):
            banned = self.banned if (step or allow_eos_first) else [*self.banned, self.eos]  # no empty names
            if logits is not None:
                tokens = self._pick_rows(logits, active, owner, requests, banned)
            for row, tok in zip(active, tokens):
                generated[row].append(int(tok))
            now = time.perf_counter()
            if step == 0:
                ttft = now - start  # prompt (prefill) + the first pick
            else:
                inter.append(now - last)  # one decode call + one pick
            last = now
            keep = (tokens != self.eos) & (max_new[active] > step + 1)
            if not keep.any():
                break
            active = active[keep]
            live = {k: v[active] for k, v in controls.items()}
            if stepper.fuse_pick(mode_for(**live, vocab=len(self.vocab))):
                mask = np.zeros(len(self.vocab), dtype=bool)
                mask[self.banned] = True  # the banned tokens of every step after the first
                feeds = {"pick_u": self._uniforms(active, owner, requests), "pick_banned": mask,
                         **{f"pick_{k}": v for k, v in live.items()}}
                logits, tokens = None, stepper.next_token(tokens[keep], keep, feeds)
            else:
                logits = stepper.next(tokens[keep], keep)
        return generated, {"tokens": sum(len(g) for g in generated), "ttft_s": ttft, "inter_token_s": inter,
                           "seconds": time.perf_counter() - start}

    @staticmethod
    def _uniforms(active: np.ndarray, owner: np.ndarray, requests: list[Request]) -> np.ndarray:
        """One uniform per live row. Each request still alive draws one per sequence per step,
        live or not, exactly as it would alone, so its text does not depend on its batch mates."""
        u = np.empty(len(active))
        for i in np.unique(owner[active]):
            mine = owner[active] == i
            first = int(np.searchsorted(owner, i))  # the request's first row in the batch
            u[mine] = requests[i].rng.random(requests[i].total)[active[mine] - first]
        return u

    @classmethod
    def _pick_rows(cls, logits: np.ndarray, active: np.ndarray, owner: np.ndarray, requests: list[Request],
                   banned: list[int]) -> np.ndarray:
        """Tokens for the live rows on the host, each request with its own controls and uniforms."""
        u = cls._uniforms(active, owner, requests)
        tokens = np.empty(len(active), dtype=np.int64)
        for i in np.unique(owner[active]):
            mine = owner[active] == i
            tokens[mine] = pick(logits[mine], u[mine], requests[i].controls, banned)
        return tokens

    def package(self, rows: ConditionRows, n: int, prefix: str, prompts: list[list[int]], generated: list[list[int]],
                meta: dict) -> Samples:
        """``prompts``: each row's prompt after BOS (the prefix; a bits model's input vectors)."""
        seqs = [p + g for p, g in zip(prompts, generated)]
        width = max(len(s) for s in seqs)
        data = np.full((len(seqs), width), self.pad, dtype=np.int64)  # prefix + new tokens (EOS kept), PAD after
        for i, s in enumerate(seqs):
            data[i, :len(s)] = s
        if self.bits:  # "input | output" as 0/1 vectors
            texts = [f"{join_bits(p, self.vocab, self.specials)} | {join_bits(g, self.vocab, self.specials)}"
                     for p, g in zip(prompts, generated)]
        else:
            texts = [prefix + decode(g, self.vocab, self.specials) for g in generated]
        meta = {**meta, "prefix": prefix, "tokens": sum(len(g) for g in generated)}  # this request's tokens
        return Samples(data=data, rows=rows.labels, n=n, kind="text", texts=texts, meta=meta)


def pick(logits: np.ndarray, u: np.ndarray, controls: dict, banned: list[int]) -> np.ndarray:
    """Tokens (B,) from logits (B, V) and uniforms u (B,) in [0, 1): greedy, or inverse CDF."""
    z = logits.astype(np.float64)
    z[:, banned] = -np.inf
    temperature, top_k, top_p = controls["temperature"], controls["top_k"], controls["top_p"]
    if temperature == 0:
        return z.argmax(axis=1).astype(np.int64)
    z = z / temperature
    if 0 < top_k < z.shape[1]:
        kth = np.sort(z, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)  # ties at the k-th value stay in
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1.0:
        p = nucleus(p, top_p)
    cdf = np.cumsum(p, axis=1)
    idx = (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1)
    return np.minimum(idx, p.shape[1] - 1).astype(np.int64)


def nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the most likely tokens until their mass reaches ``top_p`` (at least one), zero the rest."""
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    keep_sorted = (np.cumsum(sorted_p, axis=1) - sorted_p) < top_p  # mass before this token
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return np.where(keep, p, 0.0)


class RecurrentStepper:
    """``step(token, hidden, <conditions>)``: the prompt is fed token by token from a zero state.

    The state is a backend value (device-resident under IO binding / TensorRT): outputs named in
    ``feeds_back`` become the next call's inputs without visiting the host; only the logits do.
    """

    def __init__(self, backend: Backend, section: dict):
        self.backend, self.graph = backend, section["graphs"]["step"]
        self.spec = backend.bundle.graphs[self.graph]
        self.token, self.logits, self.back = section["token_input"], section["logits_output"], section["feeds_back"]
        self.state: dict = {}
        self.conds: dict = {}

    def fuse_pick(self, mode: str) -> bool:
        """Ask the backend for the step graph with the ``mode`` token pick inside (``graph_pick``)."""
        self.fused = self.backend.fused_pick(self.graph, self.logits, mode)
        return self.fused is not None

    def start(self, prompt: np.ndarray, conds: dict[str, np.ndarray]) -> np.ndarray:
        put = self.backend.put
        self.conds = {k: put(v) for k, v in conds.items()}
        self.state = {t.name: put(np.zeros(t.concrete({"batch": len(prompt)}), dtype=t.dtype))
                      for t in self.spec.inputs if t.role == "state"}
        for j in range(prompt.shape[1]):
            logits = self._run(prompt[:, j])
        return logits

    def next(self, tokens: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Drop the finished rows (``keep`` false) from the state, then one step on ``tokens``: logits."""
        self._drop(keep)
        return self._run(tokens)

    def next_token(self, tokens: np.ndarray, keep: np.ndarray, pick: dict[str, np.ndarray]) -> np.ndarray:
        """As ``next``, on the fused graph: the ``pick_*`` feeds in, the picked tokens out."""
        self._drop(keep)
        return self._run(tokens, pick)

    def _extra_feeds(self, rows: int) -> dict[str, np.ndarray]:
        return {}  # the fixed-size KV cache adds the position

    def _drop(self, keep: np.ndarray) -> None:
        take = self.backend.take_rows
        self.state = {k: take(v, self.spec.input(k).shape.index("batch"), keep) for k, v in self.state.items()}
        self.conds = {k: take(v, 0, keep) for k, v in self.conds.items()}

    def _run(self, tokens: np.ndarray, pick: dict[str, np.ndarray] | None = None) -> np.ndarray:
        feeds = {self.token: np.ascontiguousarray(tokens), **self.state, **self.conds, **(pick or {}),
                 **self._extra_feeds(len(tokens))}
        out = self.backend.run_values(self.fused if pick else self.graph, feeds)
        self.state = {inp: out[o] for o, inp in self.back.items()}
        return self.backend.get(out[TOKEN if pick else self.logits])


class KVCacheStepper(RecurrentStepper):
    """``prefill`` the whole prompt once, then ``decode`` one token at a time with the cache."""

    def __init__(self, backend: Backend, section: dict):
        graphs = section["graphs"]
        self.backend, self.prefill, self.graph = backend, graphs["prefill"], graphs["decode"]
        self.spec = backend.bundle.graphs[self.graph]
        self.prompt, self.token = section["prompt_input"], section["token_input"]
        self.logits, self.back = section["logits_output"], section["feeds_back"]
        self.state, self.conds = {}, {}

    def start(self, prompt: np.ndarray, conds: dict[str, np.ndarray]) -> np.ndarray:
        self.conds = {k: self.backend.put(v) for k, v in conds.items()}
        out = self.backend.run_values(self.prefill, {self.prompt: prompt, **self.conds})
        self.state = {inp: out[o] for o, inp in self.back.items()}
        return self.backend.get(out[self.logits])


class FixedKVStepper(KVCacheStepper):
    """``prefill``, then ``decode_fixed`` on a context-sized cache with the position fed as an input."""

    def __init__(self, backend: Backend, section: dict):
        super().__init__(backend, section)
        self.graph = section["graphs"]["decode_fixed"]
        self.spec = backend.bundle.graphs[self.graph]
        self.position_input, self.position = section["position_input"], 0

    def start(self, prompt: np.ndarray, conds: dict[str, np.ndarray]) -> np.ndarray:
        logits = super().start(prompt, conds)
        self.position = prompt.shape[1]  # the next token's slot
        state = {}
        for name, value in self.state.items():  # pad the prompt's cache to the context, once
            t = self.spec.input(name)
            full = np.zeros(t.concrete({"batch": len(prompt)}), dtype=t.dtype)
            host = self.backend.get(value)
            full[:, :, :, :host.shape[3]] = host
            state[name] = self.backend.put(full)
        self.state = state
        return logits

    def _extra_feeds(self, rows: int) -> dict[str, np.ndarray]:
        position = np.full(rows, self.position, dtype=np.int64)  # one prompt per batch: one position
        self.position += 1
        return {self.position_input: position}


class RecomputeStepper(RecurrentStepper):
    """``next(tokens, <conditions>) -> logits``: the whole sequence every step, no cache.

    The sequence is host data the sampler owns anyway (it picks tokens on the host); each step
    appends the picked tokens and reruns the graph on the sequence so far.
    """

    def __init__(self, backend: Backend, section: dict):
        self.backend, self.graph = backend, section["graphs"]["next"]
        self.token, self.logits = section["prompt_input"], section["logits_output"]
        self.seq, self.conds = np.zeros((0, 0), dtype=np.int64), {}

    def start(self, prompt: np.ndarray, conds: dict[str, np.ndarray]) -> np.ndarray:
        self.conds = {k: self.backend.put(v) for k, v in conds.items()}
        self.seq = prompt
        return self._call()

    def next(self, tokens: np.ndarray, keep: np.ndarray) -> np.ndarray:
        self._append(tokens, keep)
        return self._call()

    def next_token(self, tokens: np.ndarray, keep: np.ndarray, pick: dict[str, np.ndarray]) -> np.ndarray:
        self._append(tokens, keep)
        return self._call(pick)

    def _append(self, tokens: np.ndarray, keep: np.ndarray) -> None:
        self.seq = np.concatenate([self.seq[keep], tokens[:, None]], axis=1)  # (live rows, T + 1)
        self.conds = {k: self.backend.take_rows(v, 0, keep) for k, v in self.conds.items()}

    def _call(self, pick: dict[str, np.ndarray] | None = None) -> np.ndarray:
        feeds = {self.token: np.ascontiguousarray(self.seq), **self.conds, **(pick or {})}
        out = self.backend.run_values(self.fused if pick else self.graph, feeds)
        return self.backend.get(out[TOKEN if pick else self.logits])


STEPPERS = {"recurrent": RecurrentStepper, "kv_cache": KVCacheStepper, "kv_fixed": FixedKVStepper,
            "recompute": RecomputeStepper}


__all__ = ["AutoregressiveSampler", "nucleus", "pick"]
