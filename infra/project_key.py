"""A project key as the tools print it: never whole."""

from __future__ import annotations

from collections.abc import Collection


def shorten(key: str, unchanged: Collection[str] = ()) -> str:
    """As the function logs a key: half of it, at most four characters, then an ellipsis.
    Values in `unchanged` (such as the template's "-" for no key) are no key: shown whole."""
    return key if key in unchanged else key[:min(len(key) // 2, 4)] + "…"
