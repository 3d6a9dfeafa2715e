"""Which data a bundle's evaluator is trained on: a shipped dataset, or the user's own labelled data.

- a bundle of a shipped dataset (``digits``, ``mnist``, ``names``; or ``export_model(...,
  evaluate_on="mnist")``): that dataset;
- a bundle trained with ``genctl train FAMILY --dataset PATH``: the checkpoint recorded the data's
  resolved path and content hash (``genctl/data/user.py``), so the same files are read again;
- any bundle, given ``genctl eval --dataset PATH`` (e.g. an ``export_model`` bundle): that data,
  if its labels are the bundle's first condition's classes (and, for images, its image shape).

The evaluator learns the dataset's train split and its accuracy on the test split — the 10% no
genctl-trained generator saw — is the reference printed beside the generated samples' accuracy.
Its cache is keyed by the content hash (``genctl/eval/images.py``, ``genctl/eval/text.py``), so
data edited since is a new evaluator.
"""
from __future__ import annotations

from pathlib import Path

from genctl.errors import ConditionError


def evaluation_dataset(bundle, dataset: str | None = None) -> str:
    """The ``get_dataset`` argument the bundle is evaluated on (a shipped name or a path); a one-line
    error when no evaluator applies (no labelled data, labels that are not the first condition's)."""
    from genctl.data import DATASETS, get_dataset

    info = bundle.manifest.get("dataset", {})
    first = bundle.conditions.conditions[0] if bundle.conditions.conditions else None
    subject = f"genctl eval of bundle '{bundle.path}'"
    if dataset is None:
        name = info.get("name")
        if name in DATASETS:
            dataset, labels = name, info.get("label_names", [])
        elif info.get("path"):  # genctl train FAMILY --dataset PATH
            dataset, labels = info["path"], info.get("label_names", [])
            if not Path(dataset).exists():
                raise ConditionError(subject, got=f"dataset '{name}' whose data '{dataset}' is gone",
                                     expected="the labelled data the bundle was trained on",
                                     fix="pass --dataset PATH (the folder, .npz or .csv it was trained on)")
        else:
            raise ConditionError(subject, got=f"dataset '{name}' and no evaluator that applies",
                                 expected=f"a bundle of a shipped dataset {sorted(DATASETS)} or of your labelled data, "
                                          "whose first condition is its label",
                                 fix="pass --dataset PATH (your class folder, .npz or label,text .csv; its labels must be the "
                                     "first condition's classes), or export_model(..., evaluate_on='mnist' | PATH)")
    ds = get_dataset(dataset)
    labels = list(ds.label_names)
    if first is None or list(first.classes) != labels:
        raise ConditionError(subject, got=f"first condition {first.describe() if first else 'none'}",
                             expected=f"a categorical first condition with the labels of dataset '{dataset}' {labels[:12]}",
                             fix="evaluators classify the dataset's labels: evaluate on the data the model was trained on")
    out = bundle.info.get("output", {})
    if ds.kind != bundle.output_kind:
        raise ConditionError(subject, got=f"a {ds.kind} dataset '{dataset}'", expected=f"{bundle.output_kind} data like the samples")
    if ds.kind == "image" and out.get("shape") and list(out["shape"]) != list(ds.shape):
        raise ConditionError(subject, got=f"dataset '{dataset}' of images {list(ds.shape)}",
                             expected=f"images shaped like the samples {list(out['shape'])}")
    return dataset


def optional_dataset(bundle) -> tuple[str | None, str]:
    """``(dataset, "")`` when the bundle's own data has an evaluator, else ``(None, why not)`` (the build gate skips)."""
    from genctl.errors import GenctlError

    try:
        return evaluation_dataset(bundle), ""
    except GenctlError as exc:
        return None, str(exc.got)


def split_note(ds) -> str:
    """Which split the evaluator trains on and which it is scored on, for the report."""
    where = f" ({ds.source}, sha256 {ds.content_hash[:12]})" if getattr(ds, "source", None) else ""
    held = "its test split" if len(ds.y_test) and not _overlaps(ds) else "a test split that overlaps training (fewer than 10 examples)"
    return f"{ds.name}{where}: trained on its train split ({len(ds.y_train)}), scored on {held} ({len(ds.y_test)})"


def _overlaps(ds) -> bool:
    """User sets under 10 examples reuse a training example as the test one (``genctl/data/user.py``)."""
    return len(ds.y_train) + len(ds.y_test) < 10 and bool(getattr(ds, "source", None))
