"""The ``names`` text dataset: locales, vocabulary, split, encoding."""
from __future__ import annotations

import numpy as np
import pytest

from genctl.data import get_dataset
from genctl.data.names import LOCALES, locale_names
from genctl.errors import ConditionError
from genctl.vocab import BOS, EOS, PAD, SPECIALS, check_text, decode, encode


@pytest.fixture(scope="module")
def ds():
    return get_dataset("names")


def test_locales_and_info(ds):
    info = ds.info()
    assert info["kind"] == "text" and info["label_names"] == list(LOCALES) and len(LOCALES) >= 8
    assert info["special_tokens"] == {"pad": PAD, "bos": BOS, "eos": EOS}
    assert info["vocab"][:3] == list(SPECIALS)
    assert info["max_len"] == max(len(n) for n in ds.train_names + ds.test_names) + 2
    assert set(np.unique(ds.y_train)) == set(range(len(LOCALES)))  # every locale in both splits
    assert set(np.unique(ds.y_test)) == set(range(len(LOCALES)))


def test_distinct_scripts():
    assert any("\u0400" <= c <= "\u04ff" for n in locale_names("ru_RU") for c in n)  # Cyrillic
    assert any("\u0370" <= c <= "\u03ff" for n in locale_names("el_GR") for c in n)  # Greek
    assert any(c in "ąćęłńóśźż" for n in locale_names("pl_PL") for c in n)


def test_no_name_shared_between_locales(ds):
    names = ds.train_names + ds.test_names
    labels = np.concatenate([ds.y_train, ds.y_test])
    owner: dict[str, int] = {}
    for name, label in zip(names, labels):
        assert owner.setdefault(name, int(label)) == label, f"{name!r} in two locales"
    assert len(owner) == len(names)  # and no duplicates inside a locale


def test_split_disjoint_and_vocab_covers_all(ds):
    assert not set(ds.train_names) & set(ds.test_names)
    chars = {c for n in ds.train_names + ds.test_names for c in n}
    assert chars == set(ds.vocab[len(SPECIALS):])


def test_encoding_round_trip(ds):
    for i in (0, 5, len(ds.train_names) - 1):
        row = ds.x_train[i]
        assert row[0] == BOS and decode(row, ds.vocab) == ds.train_names[i]
        end = len(ds.train_names[i]) + 1
        assert row[end] == EOS and (row[end + 1:] == PAD).all()
    assert ds.x_train.shape[1] == ds.max_len and ds.x_train.dtype == np.int64
    assert encode("Ab", ds.vocab)[0] == BOS and encode("Ab", ds.vocab)[-1] == EOS


def test_check_text_names_bad_characters(ds):
    assert check_text("Ma", ds.vocab) == encode("Ma", ds.vocab)[1:-1]
    with pytest.raises(ConditionError, match=r"--prefix \| got 'Ma€7' with characters outside the vocabulary \['7', '€'\]"):
        check_text("Ma€7", ds.vocab)
