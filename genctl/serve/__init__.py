"""HTTP serving over the Generator: FastAPI app, dynamic batcher, Prometheus metrics.

Ray Serve (``genctl.serve.ray``) and Triton (``genctl.serve.triton``) are adapters at the edge
and are imported only by the commands that use them.
"""
from genctl.serve.app import ServeConfig, create_app, handle_generate

__all__ = ["ServeConfig", "create_app", "handle_generate"]
