"""Bundle: the self-describing folder an export lands in.

```
BUNDLE/
  manifest.json            schema version, family, conditions, graphs (+sha256), sampler, provenance, parity
  graphs/<graph>.onnx      exported graphs (and optimised variants: graphs/<graph>.<variant>.onnx)
  source/                  config.json + model.safetensors: the torch reference backend's weights
                           (+ files the family adds, e.g. the tokenizer.json of a text condition)
  engines/<cache-key>/     TensorRT engines (genctl build)
```

Loading verifies the schema version and every file's sha256, and refuses manifest paths that
leave the bundle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genctl.conditions import ConditionSchema
from genctl.errors import BundleError
from genctl.io import inside, sha256_file, write_json_atomic
from genctl.spec import GraphSpec

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# The graph variants a bundle can hold, one per ``--precision``: fp32 is the exported graphs, the
# others are written by ``genctl build`` (which of them a backend runs: its ``precisions``).
PRECISIONS = ("fp32", "opt", "fp16", "int8")


@dataclass
class Bundle:
    path: Path
    manifest: dict
    graphs: dict[str, GraphSpec] = field(default_factory=dict)
    conditions: ConditionSchema = field(default_factory=lambda: ConditionSchema([]))

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def sampler(self) -> dict:
        return self.manifest["sampler"]

    @property
    def info(self) -> dict:
        """Family-specific facts (output shape, vocabulary, schedule ...)."""
        return self.manifest.get("info", {})

    @property
    def output_kind(self) -> str:
        """``"image"`` or ``"text"``: what the samples are (picks evaluators and output writers)."""
        return self.info.get("output", {}).get("kind", "image")

    def file(self, rel: str) -> Path:
        return inside(self.path, rel, f"Bundle '{self.path}' manifest path")

    def graph_file(self, name: str, variant: str = "fp32") -> Path:
        """The ONNX file of ``name`` for a precision variant (``fp32`` is the exported graph)."""
        if variant == "fp32":
            return self.file(self.graphs[name].file)
        variants = self.manifest.get("variants", {}).get(variant)
        if not variants or name not in variants.get("graphs", {}):
            available = ["fp32"] + sorted(self.manifest.get("variants", {}))
            raise BundleError(f"Precision '{variant}' of bundle '{self.path}'", got="no such variant",
                              expected=f"one of {available}", fix=f"run 'genctl build {self.path} --target onnxruntime --precision {variant}'")
        return self.file(variants["graphs"][name]["file"])

    def source_dir(self) -> Path:
        return self.file(self.manifest["source"]["dir"])

    def save_manifest(self) -> None:
        write_json_atomic(self.path / MANIFEST, self.manifest)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> "Bundle":
        path = Path(path)
        manifest = _read_manifest(path)
        bundle = cls(path=path, manifest=manifest)
        try:
            bundle.graphs = {n: GraphSpec.from_json(g) for n, g in manifest["graphs"].items()}
            bundle.conditions = ConditionSchema.from_json(manifest["conditions"])
            manifest["family"], manifest["sampler"]["kind"], manifest["source"]["dir"]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a hand-edited field of the wrong shape
            raise BundleError(f"Bundle manifest '{path / MANIFEST}'", got=f"a missing or malformed field ({type(exc).__name__}: {exc})",
                              expected=f"a manifest written by genctl (schema {SCHEMA_VERSION})") from None
        if verify:
            bundle.verify()
        bundle.conditions.bind(path)  # kinds that read a file of the bundle (a text prompt's tokenizer)
        return bundle

    def verify(self) -> None:
        """Check every hashed file (graphs, variants, source weights) against the manifest."""
        for rel, digest in self.hashed_files():
            target = self.file(rel)
            if not target.is_file():
                raise BundleError(f"Bundle file '{target}'", got="missing", expected="the file the manifest lists",
                                  fix="re-export the bundle")
            actual = sha256_file(target)
            if actual != digest:
                raise BundleError(f"Bundle file '{target}'", got=f"sha256 {actual[:12]}…",
                                  expected=f"sha256 {digest[:12]}… from the manifest (tampered or corrupted)",
                                  fix="re-export the bundle")

    def hashed_files(self) -> list[tuple[str, str]]:
        files = [(g.file, g.sha256) for g in self.graphs.values()]
        files += list(self.manifest["source"].get("sha256", {}).items())
        for variant in self.manifest.get("variants", {}).values():
            files += [(g["file"], g["sha256"]) for g in variant.get("graphs", {}).values()]
        return files


def _read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    if not path.exists():
        raise BundleError(f"Bundle '{path}'", got="no such directory", expected="a folder written by 'genctl export'")
    if not mpath.is_file():
        raise BundleError(f"Bundle '{path}'", got="no manifest.json", expected="a folder written by 'genctl export'")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"Bundle manifest '{mpath}'", got=f"invalid JSON ({exc.msg if hasattr(exc, 'msg') else exc})",
                          expected="a JSON manifest", fix="re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"Bundle manifest '{mpath}'", got=type(manifest).__name__, expected="a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"Bundle manifest '{mpath}'", got=f"schema_version {version!r}", expected="an integer")
    if version > SCHEMA_VERSION:
        raise BundleError(f"Bundle manifest '{mpath}'", got=f"schema_version {version}",
                          expected=f"<= {SCHEMA_VERSION} (this genctl)", fix="upgrade genctl to read this bundle")
    return manifest


def unreadable_graph(path: Path, exc: Exception) -> BundleError:
    """A graph file whose hash matches its manifest but which is no ONNX graph (a manifest edited
    to fit a replaced file): one line, instead of the runtime's parser trace."""
    text = " ".join(str(exc).split())
    detail = text.rsplit("failed:", 1)[-1].strip()[:120] if text else type(exc).__name__  # ORT repeats the path first
    return BundleError(f"Graph file '{path}'", got=f"a file that does not load as an ONNX graph ({detail})",
                       expected="the ONNX graph genctl exported", fix="re-export the bundle with 'genctl export'")
