"""Engine cache keys: a hash of everything that makes a serialized TensorRT engine valid.

An engine is only valid for the exact graph bytes, the optimization profiles, the precision, the
TensorRT version that built it and the GPU (name + compute capability) it was tuned on. The key
hashes all of them, so a stale engine is never loaded: a mismatch is a clear error and ``genctl
build`` builds a new folder ``BUNDLE/engines/<key>/`` instead of overwriting another machine's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Mapping

KEY_LENGTH = 16  # hex chars used as the folder name; the full digest is kept in the build record


@dataclass(frozen=True)
class Platform:
    """What an engine is bound to besides its graph: TensorRT version and the GPU."""

    tensorrt: str
    gpu: str
    compute_capability: str  # "9.0"

    def to_json(self) -> dict:
        return asdict(self)


def key_material(graph_sha256: Mapping[str, str], profiles: Mapping[str, dict], precision: str,
                 platform: Platform) -> dict:
    """The canonical dict that is hashed (kept in the manifest so a mismatch can be explained)."""
    return {"graphs": dict(sorted(graph_sha256.items())), "profiles": profiles, "precision": precision,
            **platform.to_json()}


def engine_key(graph_sha256: Mapping[str, str], profiles: Mapping[str, dict], precision: str,
               platform: Platform) -> str:
    """Full sha256 hex digest of :func:`key_material` (sorted, compact JSON)."""
    material = key_material(graph_sha256, profiles, precision, platform)
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def folder_name(key: str) -> str:
    return key[:KEY_LENGTH]


def mismatch(record: Mapping, platform: Platform) -> str | None:
    """Why an engine build record cannot run on ``platform`` (``None`` when it can)."""
    built = record.get("platform", {})
    diffs = [f"{field} {built.get(field)!r} (here {value!r})" for field, value in platform.to_json().items()
             if built.get(field) != value]
    return "; ".join(diffs) or None
