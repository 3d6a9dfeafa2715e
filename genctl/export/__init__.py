"""torch → ONNX export of a checkpoint into a bundle, with graph and loop parity checks."""
from genctl.export.onnx import export_bundle

__all__ = ["export_bundle"]
