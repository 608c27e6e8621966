#!/usr/bin/env python3
"""The README's settings table, generated from the settings' declarations (clipsvc/settings.py).

  python scripts/settings_table.py           print the table
  python scripts/settings_table.py --write   put it into README.md in place of the one there

Each row is one `_setting(...)` of `clipsvc.settings.Settings`: its variable, its default (or `shown_default`)
and its `doc`. To change a row, change the declaration and run `--write`; tests/test_readme.py fails while
README.md holds any other table.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # clipsvc from the repo root

from clipsvc.settings import markdown_table  # noqa: E402

README = ROOT / "README.md"
# The table: its header row, then every line that starts with `|`.
TABLE = re.compile(r"^\| variable \| default \| meaning \|\n(?:\|.*\n)*", re.MULTILINE)


def readme_table(text: str) -> str:
    """The settings table in a README's text; exactly one must be there."""
    found = TABLE.findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one `| variable | default | meaning |` table, found {len(found)}")
    return found[0]


def with_table(text: str) -> str:
    """The README's text with its settings table replaced by the generated one."""
    readme_table(text)
    return TABLE.sub(lambda _: markdown_table(), text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {README.name}")
    args = parser.parse_args(argv)
    if not args.write:
        print(markdown_table(), end="")
        return
    text = README.read_text(encoding="utf-8")
    updated = with_table(text)
    if updated != text:
        README.write_text(updated, encoding="utf-8")
    print(f"{README.name}: settings table {'updated' if updated != text else 'already current'}")


if __name__ == "__main__":
    main()
