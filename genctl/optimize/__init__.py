"""The builder behind ``genctl build``: optimized artifacts of an exported bundle, each gated.

- ``build``        — entry point: ONNX Runtime variants and TensorRT / TensorRT-RTX engine sets.
- ``ort_variants`` — the ``opt``, ``fp16`` and ``int8`` ONNX graphs.
- ``tensorrt``     — one engine per graph, cached by key inside the bundle.
- ``gate``         — the quality gate every variant must pass against the fp32 graphs.

The TensorRT helpers the runtime shares (flavors, cache keys, profiles) live in ``genctl.trt``.
"""
