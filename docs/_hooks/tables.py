"""MkDocs hook: ``\\|`` inside code in a table cell shows as ``|``, as GitHub renders it.

The pages are read on GitHub too, where a table cell writes a literal pipe in code as
``\\|`` (``samples=None\\|S``); Python-Markdown keeps the backslash inside code spans.
"""

from __future__ import annotations

import re

_CELL = re.compile(r"<t([dh])([^>]*)>(.*?)</t\1>", re.S)
_CODE = re.compile(r"<code>(.*?)</code>", re.S)


def _unescape_pipes(cell: re.Match[str]) -> str:
    kind, attrs, body = cell.groups()
    body = _CODE.sub(lambda code: "<code>" + code.group(1).replace("\\|", "|") + "</code>", body)
    return f"<t{kind}{attrs}>{body}</t{kind}>"


def on_page_content(html_text: str, **kwargs) -> str:
    """Unescapes the pipes in the code of every table cell of one page."""
    return _CELL.sub(_unescape_pipes, html_text)
