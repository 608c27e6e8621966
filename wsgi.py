"""gunicorn's entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from clipsvc.web.app import create_app

app = create_app()
