"""MkDocs hook: TeX formulas as MathML at build time, so that no page fetches a math renderer.

``pymdownx.arithmatex`` (generic mode) wraps ``$...$`` in ``<span class="arithmatex">\\(...\\)
</span>`` and ``$$...$$`` in ``<div class="arithmatex">\\[...\\]</div>``; this hook replaces each
with the MathML that ``latex2mathml`` produces (browsers render MathML natively). A formula that
does not convert is a warning, hence an error under ``mkdocs build --strict``.

A display formula whose parts are separated by ``\\qquad`` at the top level (``a = b, \\qquad
c = d``) becomes one MathML block per part in a wrapping row, so that a long formula breaks
between its parts on a narrow page instead of running off it.
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
# A function name (log, exp, softmax, ...) directly followed by an identifier or a number: MathML
# Core gives it no space of its own (``\\log e_k`` would read "loge_k"); a thin space as in TeX.
_FUNCTION_NAME = re.compile(
    r"(<mi(?: [^>]*)?>[A-Za-z]{2,}</mi>)(?=<(?:mi|mn|msub|msup|msubsup)[ >])"
)
_MACRO = re.compile("|".join(re.escape(name) + r"(?![A-Za-z])" for name in _MACROS))


def to_mathml(tex: str, display: str, where: str) -> str:
    """MathML for ``tex`` (``display``: "inline" or "block"); logs a warning on failure."""
    source = _MACRO.sub(lambda m: _MACROS[m.group(0)], html.unescape(tex).strip())
    try:
        mathml = latex2mathml.converter.convert(source, display=display)
    except Exception as error:  # noqa: BLE001 - any parser error is a broken formula
        log.warning("%s: formula %r does not convert to MathML: %s", where, source, error)
        return html.escape(source)
    mathml = _FUNCTION_NAME.sub(r'\1<mspace width="0.1667em"></mspace>', mathml)
    leftover = re.sub(r"<[^>]*>", "", mathml)
    if re.search(r"\\[A-Za-z]", leftover):
        log.warning("%s: formula %r has commands MathML cannot show", where, source)
    return mathml


def split_qquad(tex: str) -> list[str]:
    """``tex`` split at the ``\\qquad`` that are outside every brace group."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(tex):
        char = tex[i]
        if char == "\\" and tex.startswith("\\qquad", i) and depth == 0:
            end = i + len("\\qquad")
            if end == len(tex) or not tex[end].isalpha():
                parts.append(tex[start:i])
                start = i = end
                continue
        if char == "\\":
            i += 2  # an escaped character, e.g. \{
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        i += 1
    parts.append(tex[start:])
    return [part.strip() for part in parts if part.strip()]


def display(tex: str, where: str) -> str:
    """A display formula: one MathML block, or a wrapping row of blocks (see the module)."""
    parts = split_qquad(html.unescape(tex))
    if len(parts) == 1:
        return to_mathml(parts[0], "block", where)
    blocks = "".join(to_mathml(html.escape(part), "block", where) for part in parts)
    return f'<div class="math-row">{blocks}</div>'


def on_page_content(html_text: str, page, **kwargs) -> str:
    """Replaces the arithmatex spans and divs of one page (docstrings included) by MathML."""
    where = page.file.src_uri
    html_text = _BLOCK.sub(lambda m: display(m.group(1), where), html_text)
    return _INLINE.sub(lambda m: to_mathml(m.group(1), "inline", where), html_text)
