"""Character vocabularies of the text families: token ids, encoding and decoding, prefix checks.

Ids: ``PAD=0, BOS=1, EOS=2``, then one token per character. A sequence is ``BOS c1 .. cn EOS``
padded with PAD to ``max_len``. Shared by the datasets that build a vocabulary, the families that
train on it and the autoregressive sampler that decodes it, so it sits below all of them.
"""
from __future__ import annotations

import functools

from genctl.errors import ConditionError

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


def encode(text: str, vocab: tuple[str, ...], max_len: int | None = None) -> list[int]:
    """``BOS chars EOS`` token ids (padded with PAD to ``max_len`` when given)."""
    index = {t: i for i, t in enumerate(vocab)}
    ids = [BOS] + [index[c] for c in text] + [EOS]
    return ids + [PAD] * ((max_len or len(ids)) - len(ids))


def decode(ids, vocab: tuple[str, ...] | list[str]) -> str:
    """Characters up to the first EOS; specials are skipped."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i >= len(SPECIALS):
            out.append(vocab[i])
    return "".join(out)


@functools.lru_cache(maxsize=8)
def char_index(vocab: tuple[str, ...]) -> dict[str, int]:
    """Character -> token id (specials excluded), cached per vocabulary."""
    return {t: i for i, t in enumerate(vocab) if i >= len(SPECIALS)}


def check_text(text: str, vocab: tuple[str, ...] | list[str], subject: str = "--prefix") -> list[int]:
    """Token ids of ``text`` (no BOS/EOS); a character outside the vocabulary is a ConditionError."""
    index = char_index(tuple(vocab))
    bad = sorted({c for c in text if c not in index})
    if bad:
        raise ConditionError(subject, got=f"{text!r} with characters outside the vocabulary {bad}",
                             expected=f"characters of the model's {len(index)}-character vocabulary (e.g. {''.join(list(index)[:20])}...)")
    return [index[c] for c in text]
