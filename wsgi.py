"""gunicorn's entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from clipsvc import create_app

app = create_app()
