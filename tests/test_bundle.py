"""Bundle loading refuses what it cannot trust, with one-line messages; writes are atomic."""
import json

import pytest

from genctl.bundle import Bundle
from genctl.errors import BundleError, GenctlError
from genctl.io import atomic_dir


@pytest.fixture
def bundle_copy(cvae_bundle, copy_bundle):
    return copy_bundle(cvae_bundle, "b")


def test_manifest_describes_model_conditions_graphs_and_provenance(cvae_bundle):
    b = Bundle.load(cvae_bundle)
    m = b.manifest
    assert m["family"] == "cvae" and m["schema_version"] == 1
    assert m["conditions"] == [{"name": "label", "names": [str(i) for i in range(10)], "kind": "categorical"}]
    assert set(b.graphs) == {"decode", "encode"}
    dec = b.graphs["decode"]
    assert [(t.name, t.dtype, t.role) for t in dec.inputs] == [("noise", "float32", "noise"), ("label", "int64", "condition")]
    assert dec.inputs[0].shape[0] == "batch" and len(dec.sha256) == 64
    for key in ("torch", "onnx", "opset", "onnxruntime"):
        assert key in m["provenance"]
    assert m["parity"]["graphs"]["decode"]["passed"] and m["parity"]["loop"]["passed"]
    assert m["parity"]["graphs"]["decode"]["batches"] == [1, 7]


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match=r"got no such directory \| expected a folder written by 'genctl export'"):
        Bundle.load(tmp_path / "nope")


def test_corrupted_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="got invalid JSON"):
        Bundle.load(bundle_copy)


def test_manifest_from_newer_schema(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["schema_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"got schema_version 99 \| expected <= 1 .*upgrade genctl"):
        Bundle.load(bundle_copy)


def test_tampered_graph_fails_hash_check(cvae_bundle, tampered_copy):
    tampered = tampered_copy(cvae_bundle, "decode")
    with pytest.raises(BundleError, match=r"decode.onnx' \| got sha256 .* \| expected sha256 .*tampered or corrupted"):
        Bundle.load(tampered)


def test_manifest_paths_cannot_leave_the_bundle(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["graphs"]["decode"]["file"] = "../../etc/passwd"
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GenctlError, match="expected a relative path inside the bundle"):
        Bundle.load(bundle_copy)


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_the_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "keep.txt").read_text() == "old"


def test_atomic_dir_refuses_existing_without_overwrite(tmp_path):
    with pytest.raises(GenctlError, match="got an existing path | expected a new path | fix: pass --force"):
        with atomic_dir(tmp_path):
            pass
