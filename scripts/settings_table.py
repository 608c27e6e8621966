#!/usr/bin/env python3
"""The settings table in docs/configuration.md, generated from the settings' declarations (clipsvc/settings.py).

  python scripts/settings_table.py           print the table
  python scripts/settings_table.py --write   put it into docs/configuration.md in place of the one there

Each row is one `_setting(...)` of `clipsvc.settings.Settings`: its variable, its default (or `shown_default`)
and its `doc`. To change a row, change the declaration and run `--write`; tests/test_readme.py fails while
docs/configuration.md holds any other table.

The declarations' links are written for a page at the repository's root (`docs/performance.md#precision`, or
`#api-keys` for a section of the API guide, which was the README's); `table()` rewrites each to reach the same
place from docs/, and an anchor alone to the page under docs/ (or the root) that has that section.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # clipsvc from the repo root

from clipsvc.settings import markdown_table  # noqa: E402

DOCUMENT = ROOT / "docs" / "configuration.md"
# The table: its header row, then every line that starts with `|`.
TABLE = re.compile(r"^\| variable \| default \| meaning \|\n(?:\|.*\n)*", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Where an anchor alone is looked for, in this order: the guides under docs/, then the root's pages.
PAGES = ("docs/*.md", "*.md")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks, colons, ...) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of `path`'s headings (outside code blocks), duplicates numbered as GitHub does."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            base, n = slug(match[1]), 1
            anchor = base
            while anchor in found:
                anchor, n = f"{base}-{n}", n + 1
            found.add(anchor)
    return found


def page_with(anchor: str) -> Path:
    """The one page that has a section `anchor`."""
    pages = [path for pattern in PAGES for path in sorted(ROOT.glob(pattern)) if anchor in anchors(path)]
    if not pages:
        raise ValueError(f"no page under docs/ or at the root has a section #{anchor}")
    return pages[0]


def relocated(target: str, document: Path = DOCUMENT) -> str:
    """A link target written for the repository's root, as `document` must write it."""
    if re.match(r"[a-z]+:", target):  # https:, mailto:
        return target
    path, _, anchor = target.partition("#")
    page = ROOT / path if path else page_with(anchor)
    if page == document:
        return f"#{anchor}"
    relative = os.path.relpath(page, document.parent)
    return relative + (f"#{anchor}" if anchor else "")


def table(document: Path = DOCUMENT) -> str:
    """The generated table, its links rewritten for `document`."""
    return LINK.sub(lambda match: f"]({relocated(match[1], document)})", markdown_table())


def document_table(text: str) -> str:
    """The settings table in a document's text; exactly one must be there."""
    found = TABLE.findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one `| variable | default | meaning |` table, found {len(found)}")
    return found[0]


def with_table(text: str) -> str:
    """The document's text with its settings table replaced by the generated one."""
    document_table(text)
    generated = table()
    return TABLE.sub(lambda _: generated, text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOCUMENT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if not args.write:
        print(table(), end="")
        return
    text = DOCUMENT.read_text(encoding="utf-8")
    updated = with_table(text)
    if updated != text:
        DOCUMENT.write_text(updated, encoding="utf-8")
    print(f"{DOCUMENT.relative_to(ROOT)}: settings table {'updated' if updated != text else 'already current'}")


if __name__ == "__main__":
    main()
