"""Prompt tokenization for text-conditioned models, with the ``tokenizers`` library and numpy only.

A text prompt becomes ``input_ids`` / ``attention_mask`` (int64, (B, L)) for the sentence-encoder
graph. This runs at serve time next to ONNX Runtime, so it must not need torch or transformers:
the Rust ``tokenizers`` package reads the same ``tokenizer.json`` that transformers' fast
tokenizer uses and gives the same ids (checked in tests/test_text_encoder.py).

``tokenizer.json`` files from the Hub often carry their own padding/truncation settings (MiniLM's
pads every prompt to 128); we turn those off and pad ourselves, to the longest prompt in the batch
(cheap) or to ``max_len`` (``fixed=True``, for engines with static shapes). Truncation is reported
per prompt, so callers can tell the user that the end of a long prompt was ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from genctl.errors import GenctlError

INSTALL = 'pip install "genctl[text]"'


class Tokens(NamedTuple):
    """A tokenized batch: unpacks as ``input_ids, attention_mask, truncated``."""

    input_ids: np.ndarray  # (B, L) int64
    attention_mask: np.ndarray  # (B, L) int64: 1 = token, 0 = padding
    truncated: list[bool]  # per prompt: tokens past max_len were dropped


def require_text_package(name: str, subject: str = "Text prompts"):
    """Import a package of the ``text`` extra, or say in one line what to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise GenctlError(subject, got=f"the '{name}' package is not installed", expected=name, fix=INSTALL) from None


def _tokenizers():
    return require_text_package("tokenizers")


class PromptTokenizer:
    """Tokenize prompts into padded int64 arrays; at most ``max_len`` tokens (specials included)."""

    def __init__(self, tokenizer, max_len: int):
        if int(max_len) < 2:
            raise GenctlError("Tokenizer max_len", got=max_len, expected="at least 2 (the [CLS] and [SEP] tokens)")
        self.max_len = int(max_len)
        padding = tokenizer.padding or {}
        self.pad_id = int(padding.get("pad_id", tokenizer.token_to_id("[PAD]") or 0))
        tokenizer.no_padding()  # padding is ours: longest-in-batch or fixed, and always int64
        # truncation by the library keeps the special tokens ([SEP] last) as transformers does and
        # fills ``overflowing`` when something was cut: that is our truncated flag
        tokenizer.enable_truncation(self.max_len)
        self._tok = tokenizer

    @classmethod
    def from_file(cls, path: str | Path, max_len: int) -> "PromptTokenizer":
        """Load a ``tokenizer.json`` (the file a bundle stores next to the encoder graph)."""
        tokenizers = _tokenizers()
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises its own Exception type for a missing or bad file
            raise GenctlError(f"Tokenizer file '{path}'", got=str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__,
                              expected="a tokenizers JSON file (tokenizer.json)") from None
        return cls(tok, max_len)

    @classmethod
    def from_str(cls, text: str, max_len: int) -> "PromptTokenizer":
        """Load from the JSON text of a ``tokenizer.json``."""
        return cls(_tokenizers().Tokenizer.from_str(text), max_len)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, prompts: Sequence[str | bytes], fixed: bool = False) -> Tokens:
        """Tokenize a batch; pad to the longest prompt, or to ``max_len`` with ``fixed=True``."""
        texts = _check_prompts(prompts)
        encodings = self._tok.encode_batch(texts, add_special_tokens=True)
        width = self.max_len if fixed else max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, :len(enc.ids)] = enc.ids
            mask[row, :len(enc.ids)] = 1
        return Tokens(ids, mask, [bool(e.overflowing) for e in encodings])


def _check_prompts(prompts: Sequence[str | bytes]) -> list[str]:
    """Prompts as str; one-line errors for a bare string, non-text items and invalid UTF-8."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise GenctlError("Prompts", got=type(prompts).__name__, expected="a list of strings")
    if not prompts:
        raise GenctlError("Prompts", got="an empty list", expected="at least one prompt (the empty prompt is \"\")")
    return [_as_text(i, p) for i, p in enumerate(prompts)]


def _as_text(i: int, prompt: str | bytes) -> str:
    if isinstance(prompt, (bytes, bytearray)):
        try:
            return bytes(prompt).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GenctlError(f"Prompt {i}", got=f"invalid UTF-8 byte 0x{prompt[exc.start]:02x} at offset {exc.start}",
                              expected="UTF-8 text") from None
    if not isinstance(prompt, str):
        raise GenctlError(f"Prompt {i}", got=type(prompt).__name__, expected="a string")
    try:
        prompt.encode("utf-8")  # lone surrogates (from undecodable bytes via surrogateescape) are not text
    except UnicodeEncodeError as exc:
        raise GenctlError(f"Prompt {i}", got=f"an unencodable character at index {exc.start}", expected="UTF-8 text") from None
    return prompt
