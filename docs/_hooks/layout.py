"""MkDocs hook: pages with wide content hide their (short) table of contents, so that the content
gets the width of the page: the tutorials show their scripts' code, written to 100 columns, and
the Choosing page has a six-column decision table."""

from __future__ import annotations

WIDE_PAGES = ("tutorials/", "choosing.md")


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Adds ``hide: [toc]`` to the metadata of the pages under WIDE_PAGES."""
    if page.file.src_uri.startswith(WIDE_PAGES):
        hide = list(page.meta.get("hide", []))
        if "toc" not in hide:
            page.meta["hide"] = [*hide, "toc"]
    return markdown
