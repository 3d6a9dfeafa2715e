"""Character vocabularies of the text families: token ids, encoding and decoding, prefix checks.

Ids: ``PAD=0, BOS=1, EOS=2``, then one token per character. A sequence is ``BOS c1 .. cn EOS``
padded with PAD to ``max_len``. A bring-your-own model may bring its own vocabulary instead: a list
of tokens (strings of any length) with its own special ids (``model_vocab``); ``decode`` and
``check_text`` take those ids (``specials``), and default to genctl's. Shared by the datasets that build a vocabulary, the families that
train on it and the autoregressive sampler that decodes it, so it sits below all of them.
"""
from __future__ import annotations

import functools

from genctl.errors import ConditionError

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


def model_vocab(vocab, bos: int | None = None, eos: int | None = None,
                pad: int | None = None) -> tuple[list[str], dict[str, int]]:
    """``(tokens, {"pad", "bos", "eos"})`` of a text model. Without special ids ``vocab`` is characters
    behind genctl's three specials; with them it is the model's whole vocabulary, ids as given (a
    model without a pad token pads with its EOS)."""
    if bos is None and eos is None and pad is None:
        return [*SPECIALS, *vocab], {"pad": PAD, "bos": BOS, "eos": EOS}
    return list(vocab), {"pad": eos if pad is None else pad, "bos": bos, "eos": eos}


def special_ids(special_tokens: dict | None) -> dict[str, int]:
    """A manifest's ``special_tokens`` (genctl's ids when absent) as ``{"pad", "bos", "eos"}`` ints."""
    given = special_tokens or {}
    return {k: int(given.get(k, default)) for k, default in (("pad", PAD), ("bos", BOS), ("eos", EOS))}


def encode(text: str, vocab: tuple[str, ...], max_len: int | None = None) -> list[int]:
    """``BOS chars EOS`` token ids (padded with PAD to ``max_len`` when given)."""
    index = {t: i for i, t in enumerate(vocab)}
    ids = [BOS] + [index[c] for c in text] + [EOS]
    return ids + [PAD] * ((max_len or len(ids)) - len(ids))


def decode(ids, vocab: tuple[str, ...] | list[str], specials: dict[str, int] | None = None) -> str:
    """Tokens up to the first EOS, joined; specials are skipped (``specials``: the model's ids, default genctl's)."""
    return "".join(_tokens(ids, vocab, specials))


def _tokens(ids, vocab, specials: dict[str, int] | None) -> list[str]:
    """The tokens of ``ids`` up to the first EOS, specials skipped."""
    eos, skip = _specials(specials)
    out = []
    for i in ids:
        i = int(i)
        if i == eos:
            break
        if i not in skip:
            out.append(vocab[i])
    return out


def _specials(specials: dict[str, int] | None) -> tuple[int, frozenset[int]]:
    if specials is None:
        return EOS, frozenset(range(len(SPECIALS)))
    ids = special_ids(specials)
    return ids["eos"], frozenset(ids.values())


@functools.lru_cache(maxsize=8)
def char_index(vocab: tuple[str, ...], skip: frozenset[int] | None = None) -> dict[str, int]:
    """Token string -> token id (specials excluded: ``skip``, default genctl's three), cached per vocabulary."""
    skip = frozenset(range(len(SPECIALS))) if skip is None else skip
    return {t: i for i, t in enumerate(vocab) if i not in skip and t}


def check_text(text: str, vocab: tuple[str, ...] | list[str], subject: str = "--prefix",
               specials: dict[str, int] | None = None) -> list[int]:
    """Token ids of ``text`` (no BOS/EOS), longest token first; text no token covers is a ConditionError."""
    index = char_index(tuple(vocab), _specials(specials)[1])
    longest = max((len(t) for t in index), default=1)
    ids, pos = [], 0
    while pos < len(text):
        for size in range(min(longest, len(text) - pos), 0, -1):
            tok = index.get(text[pos:pos + size])
            if tok is not None:
                ids.append(tok)
                pos += size
                break
        else:
            bad = sorted({c for c in text if not any(c in t for t in index)}) or [text[pos:pos + 10]]
            raise ConditionError(subject, got=f"{text!r} with characters outside the vocabulary {bad}",
                                 expected=f"characters of the model's {len(index)}-character vocabulary (e.g. {''.join(list(index)[:20])}...)"
                                 if longest == 1 else f"text made of the model's {len(index)} tokens (e.g. {' '.join(list(index)[:20])} ...)")
    return ids


# ------------------------------------------------------------------------------------ bit vectors
# Bit-vector models (``ntm`` on copy / repeat copy) have one token per ``width``-bit vector: the token's
# string is the vector written as 0s and 1s ("10110010"), bit i = character i. A prompt is such
# vectors separated by spaces; a bundle's ``info["bits"]`` holds the width and the longest input.

def bit_tokens(width: int) -> tuple[str, ...]:
    """Every ``width``-bit vector as a token string, in value order ("00000000", "00000001", ...)."""
    return tuple(format(v, f"0{width}b") for v in range(2 ** width))


def check_bits(text: str, vocab: tuple[str, ...] | list[str], width: int, max_vectors: int,
               subject: str = "--prefix") -> list[int]:
    """Token ids of ``text``, ``width``-bit vectors of 0/1 separated by spaces (or commas); a
    vector of another width, a character other than 0/1 or more than ``max_vectors`` vectors is a
    one-line ConditionError."""
    groups = text.replace(",", " ").split()
    example = " ".join(bit_tokens(width)[v % 2 ** width] for v in (178, 101))
    expected = f"{width}-bit vectors of 0s and 1s separated by spaces, e.g. '{example}'"
    for i, group in enumerate(groups, 1):
        if set(group) - {"0", "1"}:
            raise ConditionError(subject, got=f"{group!r} (vector {i}) with characters other than 0 and 1", expected=expected)
        if len(group) != width:
            raise ConditionError(subject, got=f"{group!r} (vector {i}) of {len(group)} bits", expected=expected)
    if len(groups) > max_vectors:
        raise ConditionError(subject, got=f"{len(groups)} vectors",
                             expected=f"at most {max_vectors} (the model's memory holds {max_vectors} vectors)")
    index = char_index(tuple(vocab), frozenset())
    return [index[g] for g in groups]


def join_bits(ids, vocab: tuple[str, ...] | list[str], specials: dict[str, int] | None = None) -> str:
    """Bit-vector tokens up to the first EOS as space-separated vectors (specials skipped)."""
    return " ".join(_tokens(ids, vocab, specials))
