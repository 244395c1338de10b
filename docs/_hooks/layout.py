"""MkDocs hook: the tutorials show their scripts' code, written to 100 columns; their pages hide
the table of contents (a short one) so that the code gets the width of the page."""

from __future__ import annotations

WIDE_PAGES = ("tutorials/",)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Adds ``hide: [toc]`` to the metadata of the pages under WIDE_PAGES."""
    if page.file.src_uri.startswith(WIDE_PAGES):
        hide = list(page.meta.get("hide", []))
        if "toc" not in hide:
            page.meta["hide"] = [*hide, "toc"]
    return markdown
