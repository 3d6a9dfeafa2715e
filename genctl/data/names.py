"""Text dataset ``names``: person names by Faker locale, for autoregressive families.

Each name is one word (a first or last name; a few compound names keep their space or hyphen)
taken from ``faker.providers.person.<locale>.Provider``. Locales were chosen for distinct styles:
six Latin-script languages with their own spelling (en, de, fr, it, es, pl) and two other
scripts (Cyrillic ru, Greek el). A name found in more than one locale ("Martin", "Anna") is
dropped everywhere, so the label of every name is unambiguous. Locales are capped at
``MAX_PER_LOCALE`` names (seeded sample) so no locale dominates training.

Tokens: the character vocabulary of ``genctl.vocab`` (``PAD=0, BOS=1, EOS=2``, then one token per
character, sorted). The split is a seeded per-locale shuffle.
"""
from __future__ import annotations

import functools
import importlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from genctl.vocab import BOS, EOS, PAD, SPECIALS, encode

LOCALES = ("en_US", "de_DE", "fr_FR", "it_IT", "es_ES", "pl_PL", "ru_RU", "el_GR")
# Faker list attributes that hold single first/last names (pl_PL keeps its surnames in the last two)
NAME_LISTS = ("first_names", "first_names_female", "first_names_male", "last_names", "last_names_female",
              "last_names_male", "male_last_names", "female_last_names", "unisex_last_names")
MAX_CHARS = 18  # longer names are dropped (fewer than 0.1%)
MAX_PER_LOCALE = 1500  # cap so the biggest locales (pl_PL: 3,900) do not dominate
TEST_FRACTION = 0.1
PUNCTUATION = set("-' ")


@dataclass
class TextDataset:
    """Encoded names: ``x_*`` (N, max_len) int64 ``BOS chars EOS PAD..``; ``y_*`` (N,) locale index."""

    name: str
    train_names: list[str]
    test_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    vocab: tuple[str, ...]  # token strings: the three specials, then one character per token
    max_len: int  # tokens in the longest sequence, BOS and EOS included
    kind: str = "text"
    condition_name: str = "locale"  # the condition's name (a user CSV's header names it, else "label")
    source: str | None = None  # a user dataset's resolved path and content sha256 (``ImageDataset``)
    content_hash: str | None = None

    def info(self) -> dict:
        from genctl.data.images import user_source

        return {"name": self.name, "kind": self.kind, "label_names": list(self.label_names), "vocab": list(self.vocab),
                "special_tokens": {"pad": PAD, "bos": BOS, "eos": EOS}, "max_len": self.max_len,
                "condition_name": self.condition_name, "n_train": len(self.y_train), "n_test": len(self.y_test),
                **user_source(self)}


def locale_names(locale: str) -> set[str]:
    """Every single-word-ish name Faker lists for ``locale`` (letters, space, hyphen, apostrophe)."""
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    out: set[str] = set()
    for attr in NAME_LISTS:
        for name in getattr(provider, attr, None) or ():
            name = name.strip()
            if 0 < len(name) <= MAX_CHARS and all(c.isalpha() or c in PUNCTUATION for c in name):
                out.add(name)
    return out


def unique_by_locale(locales: tuple[str, ...], cap: int, seed: int = 0) -> dict[str, list[str]]:
    """Names per locale with the shared ones removed, each list capped at ``cap`` (seeded sample)."""
    sets = {loc: locale_names(loc) for loc in locales}
    counts = Counter(n for names in sets.values() for n in names)
    rng = np.random.default_rng(seed)
    out = {}
    for loc, names in sets.items():
        unique = sorted(n for n in names if counts[n] == 1)
        if len(unique) > cap:
            unique = sorted(rng.choice(unique, size=cap, replace=False).tolist())
        out[loc] = unique
    return out


def build(locales: tuple[str, ...] = LOCALES, cap: int = MAX_PER_LOCALE, seed: int = 0) -> TextDataset:
    by_locale = unique_by_locale(locales, cap, seed)
    chars = sorted({c for names in by_locale.values() for n in names for c in n})
    vocab = SPECIALS + tuple(chars)
    max_len = max(len(n) for names in by_locale.values() for n in names) + 2
    rng = np.random.default_rng(seed + 1)
    split: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, loc in enumerate(locales):
        names = [by_locale[loc][i] for i in rng.permutation(len(by_locale[loc]))]
        n_test = max(1, int(len(names) * TEST_FRACTION))
        split["test"] += [(n, label) for n in names[:n_test]]
        split["train"] += [(n, label) for n in names[n_test:]]
    arrays = {}
    for part, items in split.items():
        arrays[part] = (np.array([encode(n, vocab, max_len) for n, _ in items], dtype=np.int64),
                        np.array([y for _, y in items], dtype=np.int64), [n for n, _ in items])
    return TextDataset("names", arrays["train"][2], arrays["test"][2], arrays["train"][0], arrays["train"][1],
                       arrays["test"][0], arrays["test"][1], tuple(locales), vocab, max_len)


@functools.lru_cache(maxsize=None)
def load_names() -> TextDataset:
    """The ``names`` dataset (8 locales, about 9,000 names; built from Faker in about a second)."""
    return build()
