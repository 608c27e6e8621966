"""The images' command: `python -m clipsvc.server.start -c gunicorn.conf.py wsgi:app`, gunicorn's own command line
behind a check of the environment that gunicorn cannot survive.

gunicorn 27 reads WEB_CONCURRENCY while its config module is being imported: the `workers` setting's default is
`int(os.environ.get("WEB_CONCURRENCY", 1))` in the class body (gunicorn/config.py). That is before it parses its
command line or reads gunicorn.conf.py, so with a value that is not a whole number `gunicorn -c gunicorn.conf.py
wsgi:app` dies with a plain-text ValueError traceback that no code of clipsvc's gets to catch. This module checks
every setting first and refuses a bad one with the same JSON line as gunicorn.conf.py
(clipsvc.server.logs.refuse_configuration). A blank WEB_CONCURRENCY means the default, to clipsvc as every blank
setting does, but gunicorn's `int("")` would fail on it: it is removed. Then this process becomes
`python -m gunicorn` with the arguments it was given (exec): PID 1 in a container is gunicorn's master, which gets
SIGTERM itself, and gunicorn's re-exec on SIGUSR2 runs gunicorn again, not this check.
"""

from __future__ import annotations

import os
import sys

from ..settings import Settings, SettingsError, env_var
from .logs import refuse_configuration

WORKERS_VAR = env_var("workers")  # WEB_CONCURRENCY, which gunicorn reads too


def main(args: list[str]) -> None:
    try:
        Settings.from_env()
    except SettingsError as exc:
        refuse_configuration(exc)
    if WORKERS_VAR in os.environ and not os.environ[WORKERS_VAR].strip():
        del os.environ[WORKERS_VAR]
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
