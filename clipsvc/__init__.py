"""clipsvc: CLIP image and text embeddings over HTTP (Flask + gunicorn, one model per worker)."""

__version__ = "0.1.0"
