"""MkDocs hook: TeX formulas as MathML at build time, so that no page fetches a math renderer.

``pymdownx.arithmatex`` (generic mode) wraps ``$...$`` in ``<span class="arithmatex">\\(...\\)
</span>`` and ``$$...$$`` in ``<div class="arithmatex">\\[...\\]</div>``; this hook replaces each
with the MathML that ``latex2mathml`` produces (browsers render MathML natively). A formula that
does not convert is a warning, hence an error under ``mkdocs build --strict``.
"""

from __future__ import annotations

import html
import logging
import re

import latex2mathml.converter

log = logging.getLogger("mkdocs.hooks.math")

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
# Commands latex2mathml does not know, as ones it does.
_MACROS = {r"\arg": r"\operatorname{arg}"}
_MACRO = re.compile("|".join(re.escape(name) + r"(?![A-Za-z])" for name in _MACROS))


def to_mathml(tex: str, display: str, where: str) -> str:
    """MathML for ``tex`` (``display``: "inline" or "block"); logs a warning on failure."""
    source = _MACRO.sub(lambda m: _MACROS[m.group(0)], html.unescape(tex).strip())
    try:
        mathml = latex2mathml.converter.convert(source, display=display)
    except Exception as error:  # noqa: BLE001 - any parser error is a broken formula
        log.warning("%s: formula %r does not convert to MathML: %s", where, source, error)
        return html.escape(source)
    leftover = re.sub(r"<[^>]*>", "", mathml)
    if re.search(r"\\[A-Za-z]", leftover):
        log.warning("%s: formula %r has commands MathML cannot show", where, source)
    return mathml


def on_page_content(html_text: str, page, **kwargs) -> str:
    """Replaces the arithmatex spans and divs of one page (docstrings included) by MathML."""
    where = page.file.src_uri
    html_text = _BLOCK.sub(lambda m: to_mathml(m.group(1), "block", where), html_text)
    return _INLINE.sub(lambda m: to_mathml(m.group(1), "inline", where), html_text)
