"""The public front door of the OCR server: gRPC and HTTP fronts that check requests before Triton sees them."""
from .app import FrontOptions, main, serve
from .http_front import create_app
from .state import FrontState, Upstream

__all__ = ["FrontOptions", "FrontState", "Upstream", "create_app", "main", "serve"]
