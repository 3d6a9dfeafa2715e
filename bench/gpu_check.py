"""Does the staged onnxruntime-gpu run on this GPU? (``bash bench/gpu_suite.sh install`` runs this.)

One small graph (Conv, Add, Relu, MatMul, Softmax: cuDNN, cuBLAS and onnxruntime's own CUDA kernels,
the ones ``bench/prune_fatbin.py`` kept for one architecture) on the CUDA provider, against the CPU
provider. Exit 1 when a GPU is present and the CUDA provider is missing, falls back or disagrees;
on a machine without a GPU it says so and exits 0 (the CPU check of the staging mechanics).
"""
from __future__ import annotations

import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def graph() -> bytes:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((1, 8, 1, 1)).astype(np.float32), "b")
    m = numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "m")
    shape = numpy_helper.from_array(np.array([0, 8, -1], dtype=np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["s"]),
             helper.make_node("MatMul", ["s", "m"], ["y0"]),
             helper.make_node("Softmax", ["y0"], ["y"], axis=-1)]
    consts = [numpy_helper.from_array(np.array([v], dtype=np.int64), n) for n, v in (("starts", 0), ("ends", 16), ("axes", 2))]
    g = helper.make_graph(nodes, "check", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 10])], [w, b, m, shape, *consts])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def main() -> int:
    gpu = shutil.which("nvidia-smi") is not None
    print("onnxruntime", ort.__version__, ort.__file__, "providers", ort.get_available_providers())
    if gpu and hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* pip packages, as genctl does
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    model = graph()
    onnx.checker.check_model(onnx.load_from_string(model))
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print("CUDA provider: not in this onnxruntime build")
        return 1 if gpu else 0
    try:
        sess = ort.InferenceSession(model, providers=["CUDAExecutionProvider"])
        used = sess.get_providers()
        cuda = sess.run(None, {"x": x})[0]
    except Exception as exc:  # a missing CUDA library, a kernel without code for this GPU
        print(f"CUDA provider: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})")
        return 1 if gpu else 0
    err = float(np.abs(cuda - cpu).max())
    if not gpu:
        print(f"no GPU on this machine (no nvidia-smi): the session ran on {used[0]}, as expected here")
        return 0
    ok = used[0] == "CUDAExecutionProvider" and err < 1e-4
    print(f"CUDA provider: session providers {used}, max |cuda - cpu| = {err:.2e}: {'ok' if ok else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
