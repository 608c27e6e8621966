"""A small .dockerignore matcher, with Docker's rules: `*` stays in a path segment, `**` spans them, `!`
re-includes, the last matching pattern wins, and a pattern matching a parent directory matches all under it."""

from __future__ import annotations

import re

from testkit import ROOT

DOCKERIGNORE = ROOT / ".dockerignore"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str] | None = None) -> bool:
    """Whether .dockerignore (or the given pattern lines) keeps `path`, relative to the context, out of the build."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines() if patterns is None else patterns:
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored
