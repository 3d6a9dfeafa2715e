"""TensorRT / TensorRT-RTX helpers shared by the engine builder and the engine backend.

Both ``genctl.optimize`` (which builds engines) and ``genctl.runtime`` (which runs them) import
from here; this package imports neither, so the runtime never loads the builder.

- ``flavors``  — what differs between the ``tensorrt`` and ``tensorrt-rtx`` modules (one table).
- ``cache``    — engine cache keys and the platform an engine is bound to.
- ``profiles`` — optimization profiles (min/opt/max input shapes) from a bundle's GraphSpecs.
- ``gpu``      — CUDA device count and compute capability from the driver, without torch.
- ``platform`` — the running platform, the TensorRT logger and the I/O check of a network or engine.
"""
