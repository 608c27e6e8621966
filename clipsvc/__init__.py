"""clipsvc: CLIP image and text embeddings over HTTP (Flask + gunicorn, one model per worker).

The packages follow the request: `parsing` (form and JSON bodies -> validated items), `encoder` (the model,
one per worker), `web` (the Flask app: routes, serialisation, errors, pages) and `server` (gunicorn's hooks
and worker, logging, request ids, metrics). `settings` and `errors` are the facts they all read.
"""

__version__ = "0.1.0"
