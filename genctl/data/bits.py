"""Bit-vector datasets ``copy`` and ``repeat-copy``: the neural Turing machine's tasks (Graves,
Wayne & Danihelka 2014, sections 4.1 and 4.2).

The input is a sequence of random 8-bit vectors; the model then writes it back (``copy``), or
writes it back as many times as asked (``repeat-copy``: the repeat count is the control code, a
categorical condition ``repeats`` "1".."5"), and ends with an end marker. Batches are drawn fresh
from a seeded generator, one random length (and repeat count) per batch, as in the paper; training
lengths are 1..10, the longer lengths 11..20 test generalisation.

Tokens (``genctl.vocab``): ``PAD=0, BOS=1, EOS=2, DELIM=3``, then one token per 8-bit vector
(``4 + value``, string "10110010"). A sequence is

    BOS x1 .. xL DELIM y1 .. y(L*R) EOS

where ``BOS x.. DELIM`` is the prompt and ``y.. EOS`` what the model writes. ``input_table``
maps a token to the paper's input vector: the 8 bits, a start flag (BOS) and a delimiter flag.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from genctl.vocab import BOS, EOS, PAD, SPECIALS, bit_tokens

WIDTH = 8
DELIM = len(SPECIALS)  # 3: ends the input phase
FIRST_VECTOR = DELIM + 1  # token id of the vector 00000000
TRAIN_LENGTHS = (1, 10)
LONG_LENGTHS = (11, 20)
CHANNELS = WIDTH + 2  # input vector: bits, start flag, delimiter flag
START_FLAG, DELIM_FLAG = WIDTH, WIDTH + 1


@dataclass(frozen=True)
class BitsDataset:
    """A task of random bit-vector sequences: ``batch(rng, ...)`` draws one training batch."""

    name: str
    max_repeats: int  # 1 for copy
    width: int = WIDTH
    lengths: tuple[int, int] = TRAIN_LENGTHS  # training lengths, inclusive
    long_lengths: tuple[int, int] = LONG_LENGTHS  # generalisation lengths, inclusive
    kind: str = "bits"
    condition_name: str = "repeats"

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(str(r) for r in range(1, self.max_repeats + 1))

    @property
    def vocab(self) -> tuple[str, ...]:
        return (*SPECIALS, "<delim>", *bit_tokens(self.width))

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, "label_names": list(self.label_names), "vocab": list(self.vocab),
                "special_tokens": {"pad": PAD, "bos": BOS, "eos": EOS, "delim": DELIM}, "width": self.width,
                "lengths": list(self.lengths), "long_lengths": list(self.long_lengths), "max_repeats": self.max_repeats,
                "condition_name": self.condition_name}

    def batch(self, rng: np.random.Generator, batch_size: int, length: int | None = None, repeats: int | None = None,
              max_length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tokens (B, 2 + L + L*R) int64, repeat index (B,) int64, targets (B, L*R + 1, width + 1) float32)``.

        One length ``L`` (uniform in the training lengths, at most ``max_length``: a curriculum) and
        one repeat count ``R`` per batch. ``tokens`` is ``BOS x DELIM y`` (the fed-back outputs; the
        model ignores them, see ``ntm``); ``targets`` the bits and the end marker of every step from
        DELIM on: ``y`` with marker 0, then zero bits with marker 1.
        """
        lo, hi = self.lengths
        hi = min(hi, max_length) if max_length else hi
        length = int(rng.integers(lo, hi + 1)) if length is None else length
        repeats = int(rng.integers(1, self.max_repeats + 1)) if repeats is None else repeats
        values = rng.integers(0, 2 ** self.width, size=(batch_size, length))  # (B, L)
        out = np.tile(values, (1, repeats))  # (B, L*R)
        tokens = np.concatenate([np.full((batch_size, 1), BOS), FIRST_VECTOR + values, np.full((batch_size, 1), DELIM),
                                 FIRST_VECTOR + out], axis=1).astype(np.int64)
        targets = np.zeros((batch_size, out.shape[1] + 1, self.width + 1), dtype=np.float32)
        targets[:, :-1, :self.width] = unpack(out, self.width)
        targets[:, -1, self.width] = 1.0
        return tokens, np.full(batch_size, repeats - 1, dtype=np.int64), targets


def unpack(values: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """Integers (...,) → their bits (..., width) as float32, most significant first (the token string's order)."""
    shifts = np.arange(width - 1, -1, -1)
    return ((values[..., None] >> shifts) & 1).astype(np.float32)


def input_table(vocab_size: int, width: int = WIDTH) -> np.ndarray:
    """(V, width + 2): each token's input vector — a vector token its bits, BOS the start flag,
    DELIM the delimiter flag; PAD and EOS zeros."""
    table = np.zeros((vocab_size, width + 2), dtype=np.float32)
    table[FIRST_VECTOR:FIRST_VECTOR + 2 ** width, :width] = unpack(np.arange(2 ** width), width)
    table[BOS, width] = 1.0
    table[DELIM, width + 1] = 1.0
    return table


@functools.lru_cache(maxsize=None)
def load_copy() -> BitsDataset:
    """Copy: 8-bit vector sequences of length 1..10, written back once."""
    return BitsDataset("copy", max_repeats=1)


@functools.lru_cache(maxsize=None)
def load_repeat_copy() -> BitsDataset:
    """Repeat copy: the sequence written back 1..5 times (the repeat count is the condition)."""
    return BitsDataset("repeat-copy", max_repeats=5)
