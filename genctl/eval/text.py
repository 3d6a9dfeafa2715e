"""Control accuracy, novelty and diversity for text families (names by locale).

The locale classifier is a character n-gram model genctl trains on the bundle's own dataset
(train split): counts of 1- to 4-grams inside word boundaries + multinomial naive Bayes. It is as
accurate here as TF-IDF + logistic regression (82% vs 81.5% on held-out names) and trains in
under a second, so it is kept in memory only (per process). Its
accuracy on the real held-out names is the ceiling for the generated names' control accuracy:
a model that writes names exactly like its locale scores about that, not 100%.

The same classifier judges any labelled text dataset (a user's ``label,text`` file): it learns that
file's train split and is scored on its test split (``genctl/eval/dataset.py``); the in-process
cache is keyed by the file's content hash, so an edited file is fitted again.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from genctl.data import get_dataset
from genctl.errors import GenctlError


def locale_classifier(dataset_name: str):
    """``(pipeline, info)``: the fitted classifier and its accuracy on the real test split of a text
    dataset (``names`` or a user's labelled file; cached per content)."""
    ds = get_dataset(dataset_name)
    if getattr(ds, "kind", None) != "text":
        raise GenctlError(f"Dataset '{dataset_name}' for the text classifier", got=f"a {ds.kind} dataset",
                          expected="a text dataset (names, or a label,text file)")
    return _fitted(dataset_name, getattr(ds, "content_hash", None))


@functools.lru_cache(maxsize=4)
def _fitted(dataset_name: str, content_hash: str | None):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    from genctl.eval.dataset import split_note

    ds = get_dataset(dataset_name)
    clf = make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False), MultinomialNB(alpha=0.1))
    clf.fit(ds.train_names, ds.y_train)
    pred = clf.predict(ds.test_names)
    per_locale = {name: float((pred[ds.y_test == k] == k).mean())  # labels with test examples (tiny user files may lack some)
                  for k, name in enumerate(ds.label_names) if np.any(ds.y_test == k)}
    info = {"test_accuracy": float((pred == ds.y_test).mean()), "per_locale": per_locale,
            "mean_accuracy": float(np.mean(list(per_locale.values()))),
            "model": "char 1-4-gram counts + multinomial naive Bayes", "n_train": len(ds.train_names),
            "n_test": len(ds.test_names), "split": split_note(ds)}
    return clf, info


def evaluate_text(generator, n_per_locale: int = 200, seed: int = 0, dataset: str | None = None, **controls: Any) -> dict:
    """Generate ``n_per_locale`` names per locale and score them.

    - control accuracy: share of generated names the classifier assigns to the requested locale,
      per locale and mean (next to the classifier's accuracy on real held-out names);
    - novelty: share of generated names not in the training set (any locale);
    - diversity: distinct names / generated names (per locale, averaged).

    ``dataset``: the labelled text to judge by (default the bundle's own, ``genctl.eval.dataset``).
    """
    from genctl.eval.dataset import evaluation_dataset

    bundle = generator.bundle
    dataset_name = dataset or evaluation_dataset(bundle)
    clf, info = locale_classifier(dataset_name)
    cond = bundle.conditions.conditions[0]
    samples = generator.generate({cond.name: list(range(len(cond.names)))}, n=n_per_locale, seed=seed, **controls)
    texts = np.array(samples.texts, dtype=object).reshape(len(cond.names), n_per_locale)
    pred = clf.predict(list(texts.ravel())).reshape(texts.shape) if texts.size else np.zeros(texts.shape, int)
    training = set(get_dataset(dataset_name).train_names)
    per_locale = {name: float((pred[k] == k).mean()) for k, name in enumerate(cond.names)}
    return {
        "n_per_locale": n_per_locale, "seed": seed, "controls": {k: v for k, v in controls.items() if v is not None},
        "control_accuracy": per_locale,
        "mean_accuracy": float(np.mean(list(per_locale.values()))),
        "classifier_test_accuracy": info["test_accuracy"],
        "classifier_mean_accuracy": info["mean_accuracy"],  # per-locale mean: compare with mean_accuracy
        "classifier_per_locale": info["per_locale"],
        "evaluator_data": info["split"],
        "novelty": float(np.mean([t not in training for t in texts.ravel()])),
        "diversity": float(np.mean([len(set(row)) / len(row) for row in texts])),
        "examples": {name: list(texts[k][:5]) for k, name in enumerate(cond.names)},
    }
