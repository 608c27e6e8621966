"""A client for clipsvc and a command line to index a photo library, importable without torch or the server.

Needs requirements-client.txt (requests, numpy, tqdm, pyarrow), not the service's requirements.
"""

from .api import Batch, Client, Failure, ItemsRefused, ServiceError, Unreachable

__all__ = ["Batch", "Client", "Failure", "ItemsRefused", "ServiceError", "Unreachable"]
