"""``text``: a prompt, tokenized and encoded by the bundle's sentence-encoder graph, once per request.

The prompt is tokenized with the ``tokenizers`` library (the bundle's ``tokenizer.json``, padded
to ``max_tokens`` so prompts of any length batch together) and run through the encoder graph
(``encoder``: ``input_ids, attention_mask -> states, pooled``) in the *encode stage*, between
parsing and the sampler: the encoder runs once per request, never per denoising step, and
repeated prompts are answered from a bounded cache (``PromptCache``; serve counts its hits).

``feed="states"``: the generator attends to the token states (cross-attention), fed as
``NAME_states`` (batch, max_tokens, dim) and ``NAME_mask`` (batch, max_tokens). ``feed="pooled"``:
a one-shot model with a vector condition gets the pooled sentence embedding as ``NAME`` (batch, dim).

The empty prompt is the unconditional prompt: its encoding is the null of classifier-free guidance
(a text-to-image model is trained with it). A prompt longer than ``max_tokens`` tokens is refused in
one line (not silently truncated), as is a prompt that is not text (bytes that are not UTF-8).
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genctl.conditions.kinds import ConditionKind, RunGraph
from genctl.errors import ConditionError
from genctl.spec import TensorSpec

FEEDS = ("states", "pooled")
MAX_CHARS = 2000  # far past any prompt max_tokens allows; keeps a pasted document from reaching the tokenizer


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt after the encode stage: what the graphs are fed for it."""

    text: str
    states: np.ndarray  # (max_tokens, dim) float32, zero at padded positions
    mask: np.ndarray  # (max_tokens,) int64, 1 = a real token
    pooled: np.ndarray  # (dim,) float32: the sentence embedding


class PromptCache:
    """A bounded LRU of encoded prompts keyed by (encoder graph, prompt); counts hits and misses."""

    def __init__(self, maxsize: int = 1024):
        self.maxsize, self.hits, self.misses = maxsize, 0, 0
        self._items: OrderedDict[tuple[str, str], EncodedPrompt] = OrderedDict()

    def get(self, key: tuple[str, str]) -> EncodedPrompt | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: tuple[str, str], value: EncodedPrompt) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, max_tokens: int):
    from genctl.text_tokens import PromptTokenizer

    return PromptTokenizer.from_file(path, max_tokens)


@dataclass(frozen=True)
class Text(ConditionKind):
    name: str
    dim: int = 384  # the encoder's hidden size
    max_tokens: int = 32  # the encoder's input length, [CLS] and [SEP] included
    encoder: str = "encoder"  # the bundle graph of the encode stage
    tokenizer: str = "source/tokenizer.json"  # bundle-relative
    feed: str = "states"  # "states" (cross-attention) or "pooled" (a vector condition of a one-shot model)
    kind = "text"
    takes_prompts = True

    def __post_init__(self):
        if self.feed not in FEEDS:
            raise ConditionError(f"Condition '{self.name}' feed", got=repr(self.feed), expected=f"one of {list(FEEDS)}")

    @property
    def encoder_graph(self) -> str:  # type: ignore[override]
        return self.encoder

    # ---- parse ------------------------------------------------------------------------------------
    def bind(self, root: Path) -> None:
        object.__setattr__(self, "_root", Path(root))

    def _tok(self):
        root = getattr(self, "_root", None)
        return None if root is None else _tokenizer(str(root / self.tokenizer), self.max_tokens)

    def parse(self, value: object) -> str:
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._error(f"bytes that are not UTF-8 ({exc.reason} at byte {exc.start})", "a UTF-8 text prompt") from None
        if not isinstance(value, str):
            raise self._error(f"a {type(value).__name__}", "a text prompt (a string)")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise self._error("text with unpaired surrogates (invalid UTF-8 on the command line)", "a UTF-8 text prompt")
        text = " ".join(value.split())
        if len(text) > MAX_CHARS:
            raise self._error(f"a prompt of {len(text)} characters", f"at most {self.max_tokens} tokens (about {4 * self.max_tokens} characters)")
        tok = self._tok()
        if tok is not None:
            if tok.encode([text]).truncated[0]:
                raise self._error(f"a prompt of more than {self.max_tokens} tokens ({text[:40]!r}...)",
                                  f"at most {self.max_tokens} tokens ([CLS] and [SEP] included: the encoder's input length)",
                                  fix="shorten the prompt")
        return text

    def column(self, raw: Any) -> list:
        """A prompt is one row (commas are text); a list of prompts gives one row each."""
        if raw is None:
            return self.default_column()
        items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if not items:
            raise self._error("an empty list", "a prompt or a list of prompts")
        return [self.parse(v) for v in items]

    def default(self) -> str:
        return ""  # no prompt: unconditional samples

    def null(self) -> str:
        return ""

    def parity_values(self) -> list:
        return [self.example(), ""]  # a prompt and the unconditional one

    def check_null(self, value: Any) -> None:
        if value not in ("", None):
            raise self._error(repr(value), "the empty prompt (its encoding is the text null)")

    # ---- encode stage -----------------------------------------------------------------------------
    def encode(self, values: list, run: RunGraph, cache: PromptCache | None = None) -> list[EncodedPrompt]:
        """Encode each distinct prompt once (the cache first), then map the rows to their encodings."""
        done: dict[str, EncodedPrompt] = {}
        for text in dict.fromkeys(v.text if isinstance(v, EncodedPrompt) else v for v in values):
            hit = cache.get((self.encoder, text)) if cache is not None else None
            if hit is not None:
                done[text] = hit
        todo = [t for t in dict.fromkeys(v.text if isinstance(v, EncodedPrompt) else v for v in values) if t not in done]
        if todo:
            tok = self._tok()
            if tok is None:
                raise ConditionError(f"Condition '{self.name}'", got="no tokenizer (the condition was not bound to a bundle)",
                                     expected="a condition loaded with its bundle")
            ids, mask, _ = tok.encode(todo, fixed=True)
            out = run(self.encoder, {"input_ids": ids, "attention_mask": mask})
            states, pooled = np.asarray(out["states"], np.float32), np.asarray(out["pooled"], np.float32)
            for i, text in enumerate(todo):
                enc = EncodedPrompt(text, states[i], mask[i].astype(np.int64), pooled[i])
                done[text] = enc
                if cache is not None:
                    cache.put((self.encoder, text), enc)
        return [done[v.text if isinstance(v, EncodedPrompt) else v] for v in values]

    # ---- graph ------------------------------------------------------------------------------------
    def specs(self, null: Any = None) -> list[TensorSpec]:
        if self.feed == "pooled":
            return [TensorSpec(self.name, "float32", ["batch", self.dim], "condition")]
        return [TensorSpec(f"{self.name}_states", "float32", ["batch", self.max_tokens, self.dim], "condition"),
                TensorSpec(f"{self.name}_mask", "int64", ["batch", self.max_tokens], "condition", high=2)]

    def feeds(self, values: Sequence[EncodedPrompt]) -> dict[str, np.ndarray]:
        if any(not isinstance(v, EncodedPrompt) for v in values):
            raise ConditionError(f"Condition '{self.name}'", got="a prompt that has not been through the encode stage",
                                 expected="rows from Generator.request (which runs the encoder)")
        if self.feed == "pooled":
            return {self.name: np.stack([v.pooled for v in values]).astype(np.float32)}
        return {f"{self.name}_states": np.stack([v.states for v in values]).astype(np.float32),
                f"{self.name}_mask": np.stack([v.mask for v in values]).astype(np.int64)}

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        if self.feed == "pooled":
            vec = rng.standard_normal((batch, self.dim)).astype(np.float32)
            return {self.name: vec / np.linalg.norm(vec, axis=1, keepdims=True)}
        lengths = np.linspace(2, self.max_tokens, batch).astype(int)
        mask = (np.arange(self.max_tokens)[None] < lengths[:, None]).astype(np.int64)
        states = (rng.standard_normal((batch, self.max_tokens, self.dim)) * mask[..., None]).astype(np.float32)
        return {f"{self.name}_states": states, f"{self.name}_mask": mask}

    # ---- describe ---------------------------------------------------------------------------------
    def row_label(self, value: Any) -> str:
        text = value.text if isinstance(value, EncodedPrompt) else str(value)
        return f'{self.name}="{text[:60]}{"..." if len(text) > 60 else ""}"'

    def describe(self) -> str:
        return f"text prompt (at most {self.max_tokens} tokens; encoder graph '{self.encoder}', {self.dim}-d {self.feed})"

    def example(self) -> str:
        return "a bold 7 leaning right"
