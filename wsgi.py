"""gunicorn's entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, imported in each worker after post_fork has
built its encoder (preload_app is off)."""

from clipsvc.server import lifecycle
from clipsvc.web.app import create_app

app = create_app(encoder=lifecycle.worker_encoder())
