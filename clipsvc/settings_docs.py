"""The settings' declarations as the docs show them: the table in docs/configuration.md is generated from here
(`python scripts/settings_table.py --write`), so what the docs say of a setting is what clipsvc.settings declares."""

from __future__ import annotations

from dataclasses import fields

from .settings import Settings


def shown_default(name: str) -> str:
    """Setting `name`'s default as the README shows it: the value as one would set it, or its words."""
    spec = next(spec for spec in fields(Settings) if spec.name == name)
    if spec.metadata["shown_default"] is not None:
        return spec.metadata["shown_default"]
    value = spec.default
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if value is None or value == ():
        raise ValueError(f"{spec.metadata['var']}'s default needs words: give it a shown_default")
    return f"`{value}`"


def markdown_table() -> str:
    """The README's settings table, one row a setting in declaration order: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in fields(Settings):
        cells = (f"`{spec.metadata['var']}`", shown_default(spec.name), spec.metadata["doc"])
        if any("|" in cell or "\n" in cell for cell in cells):
            raise ValueError(f"{spec.metadata['var']}: a table cell cannot hold `|` or a line break")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
