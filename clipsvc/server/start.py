"""Start-up's check of the environment as a whole, before any worker boots, and the images' command.

clipsvc.settings checks each setting. The master knows two more things before forking, declared here: settings that
cannot work together (`CONFLICTS`), refused like a bad value (exit status 78 and one JSON line,
clipsvc.server.logs.refuse_configuration) instead of a worker failing to boot seconds later; and `CLIP_*` variables
that are no setting, read by nothing (a typo), one warning line each (`warn_unknown_variables`, from gunicorn's
on_starting: once per start, in the master). gunicorn.conf.py reads its settings through `checked_settings`.

The images' command, `python -m clipsvc.server.start -c gunicorn.conf.py wsgi:app`, is gunicorn's own command line
behind that check. gunicorn 27 reads WEB_CONCURRENCY while its config module is being imported: the `workers`
setting's default is `int(os.environ.get("WEB_CONCURRENCY", 1))` in the class body (gunicorn/config.py). That is
before it parses its command line or reads gunicorn.conf.py, so with a value that is not a whole number `gunicorn -c
gunicorn.conf.py wsgi:app` dies with a plain-text ValueError traceback that no code of clipsvc's gets to catch. This
command checks first. A blank WEB_CONCURRENCY means the default, to clipsvc as every blank setting does, but
gunicorn's `int("")` would fail on it: it is removed. Then this process becomes `python -m gunicorn` with the
arguments it was given (exec): PID 1 in a container is gunicorn's master, which gets SIGTERM itself, and gunicorn's
re-exec on SIGUSR2 runs gunicorn again, not this check.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..settings import ENV_VARS, Settings, SettingsError, env_var
from .logs import refuse_configuration

log = logging.getLogger(__name__)

WORKERS_VAR = env_var("workers")  # WEB_CONCURRENCY, which gunicorn reads too
# Settings' variables start with it (but PORT and WEB_CONCURRENCY). Another variable with it is warned about, not
# refused: other tools use the prefix too (Weaviate's CLIP_INFERENCE_API).
SETTING_PREFIX = "CLIP_"
DEFAULTS = Settings()


class Conflict(NamedTuple):
    """Values of two settings that cannot work together, known before any worker boots."""

    names: tuple[str, str]  # the two settings' fields
    clash: Callable[[Any, Any], bool]  # their values, in that order -> whether they cannot work together
    reason: str
    accepted: str  # what works instead


# Combinations that fail whatever the machine (docs/configuration.md). A limit bounded by another
# (CLIP_MAX_IMAGE_MB by CLIP_MAX_REQUEST_MB) is clipsvc.settings' own check. With CLIP_DEVICE=auto only a worker
# knows the device (the master imports no torch): there clipsvc.encoder.precision.resolve refuses a format the device
# cannot run, and gunicorn stops with "Worker failed to boot".
CONFLICTS = (
    Conflict(("precision", "device"), lambda precision, device: precision == "fp16" and device == "cpu",
             "fp16 runs on GPUs only",
             "CLIP_PRECISION auto, fp32, bf16 or int8 on a CPU; fp16 with CLIP_DEVICE=cuda, cuda:N, or auto on a GPU"),
    Conflict(("precision", "device"), lambda precision, device: precision == "int8" and device.startswith("cuda"),
             "int8 runs on CPUs only",
             "CLIP_PRECISION auto, fp32, bf16 or fp16 on a GPU; int8 with CLIP_DEVICE=cpu, or auto without a GPU"),
)


def check_conflicts(settings: Settings) -> None:
    """Refuse the first combination of CONFLICTS that `settings` hold, naming first what the operator changed (the
    setting not at its default), then the other with its value."""
    for conflict in CONFLICTS:
        if conflict.clash(*(getattr(settings, name) for name in conflict.names)):
            changed, other = sorted(conflict.names, key=lambda name: _is_default(settings, name))  # stable
            default = " (its default)" if _is_default(settings, other) else ""
            raise SettingsError(env_var(changed), str(getattr(settings, changed)),
                                f"with {env_var(other)}={getattr(settings, other)}{default}, {conflict.reason}",
                                conflict.accepted)


def _is_default(settings: Settings, name: str) -> bool:
    return getattr(settings, name) == getattr(DEFAULTS, name)


def checked_settings() -> Settings:
    """The settings, or the process stops with exit status 78 and one JSON line: before any worker boots, never a
    worker failing to load seconds later."""
    try:
        settings = Settings.from_env()
        check_conflicts(settings)
    except SettingsError as exc:
        refuse_configuration(exc)
    return settings


def closest_setting(name: str) -> str | None:
    """The setting's variable most like `name`, for a typo's warning; compared without the prefix, so that the prefix
    every setting shares does not make any name look close (and CLIP_PORT finds PORT)."""
    stems = {var.removeprefix(SETTING_PREFIX): var for var, _ in ENV_VARS.values()}
    matches = difflib.get_close_matches(name.upper().removeprefix(SETTING_PREFIX), stems, n=1)
    return stems[matches[0]] if matches else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """Variables named like a setting (`CLIP_*`, any case) that are none, each with the closest setting's variable:
    read by nothing, a typo would otherwise leave the default in force without a word."""
    env = os.environ if environ is None else environ
    known = {var for var, _ in ENV_VARS.values()}
    return [(name, closest_setting(name)) for name in sorted(env)
            if name.upper().startswith(SETTING_PREFIX) and name not in known]


def warn_unknown_variables() -> None:
    """In the master, once a start (gunicorn's on_starting): one warning line a variable, naming the closest setting.
    Not a refusal: other tools use the prefix too. The value is never shown: a misspelled CLIP_API_KEYS holds keys."""
    for variable, closest in unknown_variables():
        guess = f"did you mean {closest}?" if closest else "no setting has a similar name"
        log.warning("%s is not a setting of this service and is ignored: %s (if another tool reads it, ignore this "
                    "line)", variable, guess, extra={"event": "unknown_setting", "variable": variable,
                                                    "did_you_mean": closest})


def main(args: list[str]) -> None:
    checked_settings()
    if WORKERS_VAR in os.environ and not os.environ[WORKERS_VAR].strip():
        del os.environ[WORKERS_VAR]
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
