"""The README's examples, taken from their section and run as written, against a test server's address."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from testkit import ROOT

README = ROOT / "README.md"
ADDRESS = "http://127.0.0.1:8081"  # where the README's examples send their requests


def code_blocks(heading: str, language: str) -> list[str]:
    """The `language` code blocks of the section under `heading`, up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    section = re.split(rf"\n#{{1,{level}}} ", README.read_text().split(heading, 1)[1], maxsplit=1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```")[1::2] if block.startswith(language)]


def run_bash(code: str, url: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A shell example with the README's address replaced by `url`."""
    return subprocess.run(["bash", "-c", code.replace(ADDRESS, url)], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
