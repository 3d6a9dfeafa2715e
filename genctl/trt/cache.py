"""Engine cache keys: a hash of everything that makes a serialized TensorRT engine valid.

An engine is only valid for the exact graph bytes (the fp16 variant's for fp16), the optimization
profiles, the precision, the module (TensorRT or TensorRT-RTX) and version that built it, and the
GPU (name + compute capability) it was tuned on — or, for TensorRT-RTX, which builds ahead of time
without a GPU, the list of compute capabilities it targets (``gpu`` is then ``"any"``). The key
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

    tensorrt: str  # version of the module that built / runs the engine
    gpu: str  # "NVIDIA H100 80GB HBM3"; "any" for an engine built for a capability list
    compute_capability: str  # "9.0"; "8.0,8.6,8.9,12.0" for a capability list
    runtime: str = "tensorrt"  # "tensorrt" or "tensorrt-rtx" (genctl.trt.flavors)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self.compute_capability.split(","))


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
    built = {"runtime": "tensorrt", **record.get("platform", {})}
    diffs = [f"{field} {built.get(field)!r} (here {value!r})" for field, value in platform.to_json().items()
             if not _fits(field, built.get(field), value)]
    return "; ".join(diffs) or None


def _fits(field: str, built, here) -> bool:
    """An engine built for ``gpu: any`` and a capability list runs on any GPU of one of them."""
    if field == "gpu" and built == "any":
        return True
    if field == "compute_capability" and isinstance(built, str) and "," in built:
        return here in built.split(",")
    return built == here
