"""The torch reference backends pick their device: CUDA where torch sees a GPU (like with like on a
GPU box), else the CPU; ``torch+cpu`` / ``torch+cuda`` choose, and every row says where it ran."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable
from genctl.runtime.backends import open_backend
from genctl.runtime.backends.base import TorchValues
from genctl.runtime.generator import Generator


def test_default_device_follows_what_torch_sees(cvae_bundle):
    with open_backend(Bundle.load(cvae_bundle), "torch") as backend:
        want = "cuda" if torch.cuda.is_available() else "cpu"
        assert backend.device == want and backend.describe() == f"torch[{want}]"
        assert (backend.values is not None) == (want == "cuda")  # loop state stays on the GPU only


def test_explicit_cpu_and_refused_cuda(cvae_bundle):
    bundle = Bundle.load(cvae_bundle)
    with open_backend(bundle, "torch+cpu") as backend:
        assert backend.describe() == "torch[cpu]" and backend.values is None
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match=r"Backend 'torch\+cuda' \| got no CUDA GPU visible to torch \| "
                                                     r"expected an NVIDIA GPU .* \| fix: use 'torch' \(CPU here\)"):
            open_backend(bundle, "torch+cuda")


def test_value_path_gives_the_same_samples_as_numpy_calls(cvae_bundle):
    """The device-resident path (what runs on CUDA) exercised on CPU tensors: same samples."""
    with Generator.load(cvae_bundle, backend="torch+cpu") as plain, Generator.load(cvae_bundle, backend="torch+cpu") as tensors:
        tensors.backend.values = TorchValues("cpu")
        a = plain.generate({"label": [1, 8]}, n=3, seed=11)
        b = tensors.generate({"label": [1, 8]}, n=3, seed=11)
        np.testing.assert_array_equal(a.data, b.data)
        spec = tensors.bundle.graphs["decode"]
        feeds = {t.name: tensors.backend.put(np.zeros(t.concrete({"batch": 2}), dtype=t.dtype)) for t in spec.inputs}
        assert isinstance(tensors.backend.run_values("decode", feeds)["sample"], torch.Tensor)


@pytest.mark.gpu
def test_gpu_torch_and_compile_run_on_cuda_and_match_cpu(cuda, cvae_bundle):
    with Generator.load(cvae_bundle, backend="torch+cpu") as cpu, Generator.load(cvae_bundle, backend="torch") as gpu, \
            Generator.load(cvae_bundle, backend="torch-compile") as compiled:
        assert gpu.backend.describe() == "torch[cuda]" and compiled.backend.describe() == "torch-compile[cuda]"
        ref = cpu.generate({"label": [2, 9]}, n=4, seed=3).data
        for g in (gpu, compiled, compiled):  # twice: the CUDA-graph replay must not hand back overwritten outputs
            got = g.generate({"label": [2, 9]}, n=4, seed=3).data
            assert float(np.abs(got - ref).max()) <= 1e-4
