"""HTTP front over the Generator (stdlib only): GET /healthz, GET /manifest, POST /generate."""
from genctl.serve.app import make_server

__all__ = ["make_server"]
