"""What the tests and the benchmarks share, so each is written once.

- server: the one runner of real `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port
- procs: the master's workers, their memory, from /proc
- jsonlog: the server's JSON-lines log, read tolerantly (a line still being written waits for the next read)
- rawhttp: HTTP/1.1 by hand on a socket, for clients that misbehave on purpose
- faults: bounded waits, client load threads and reported figures for the fault tests
- images: encoded test pictures (and a PNG header that claims a huge size)
- responses: the checks on our error shape many test files make
- readme: the guides' examples (README.md, docs/), taken from their section and run as written
- models: model directories in the shapes operators mount them (zipped)
- encoding: encoders built as a worker builds its own, and one kind of item at a time through the served path
- dockerfile, dockerignore: small readers of the Dockerfile and .dockerignore
- kustomize, deploy: deploy/k8s rendered by `kubectl kustomize`, and the repo's deployment files
- hostile: valid but hostile requests, and the budget of time and memory each must meet
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
