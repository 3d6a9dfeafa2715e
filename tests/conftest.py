"""Shared fixtures: a tiny cVAE trained on digits and exported once per session."""
from __future__ import annotations

import os

import pytest

from genctl import progress


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Evaluators are cached under GENCTL_CACHE; tests keep theirs out of the user's home."""
    os.environ["GENCTL_CACHE"] = str(tmp_path_factory.mktemp("genctl-cache"))
    progress.ENABLED = False
    yield


@pytest.fixture(scope="session")
def cvae_checkpoint(tmp_path_factory):
    from genctl.training.train import train

    out = tmp_path_factory.mktemp("ckpt") / "cvae"
    train("cvae", "digits", out, epochs=4, seed=0)
    return out


@pytest.fixture(scope="session")
def cvae_bundle(cvae_checkpoint, tmp_path_factory):
    from genctl.export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "cvae"
    export_bundle(cvae_checkpoint, out)
    return out
