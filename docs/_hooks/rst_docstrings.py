"""Griffe extension: the reStructuredText markup of imlejax's docstrings as Markdown.

The docstrings follow the Google style with Sphinx roles for formulas and cross-references. Before
mkdocstrings renders them this extension rewrites, in each docstring:

* ``:math:`x``` as ``$x$`` and a ``.. math::`` block as a ``$$ ... $$`` block (arithmatex; the
  ``math`` hook turns both into MathML);
* ``:func:`name```, ``:class:`name```, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:`` as code,
  linked when ``name`` is a documented public object (resolved in the docstring's public module,
  then in ``imlejax``); a leading ``~`` shows the last component only;
* a paragraph ending in ``::`` followed by an indented literal block as a fenced Python block;
* the section title ``Example:`` as ``Examples:`` (Google style's name for doctest sections).

It also shows a parameter default that is a module constant (``noise=DEFAULT_NOISE``) as the
constant's ``repr`` (``noise=Gumbel(tau=1.0)``), the value a caller gets.
"""

from __future__ import annotations

import importlib
import re
import textwrap

import griffe

# Public modules, most specific first: an unqualified name in a docstring of one of their
# (private) submodules is looked up there first.
PUBLIC_MODULES = ("imlejax.flax.nnx", "imlejax.flax.linen", "imlejax.ksubset", "imlejax")
# Modules that have a page of their own in the API reference.
DOCUMENTED_MODULES = ("imlejax.flax.nnx", "imlejax.flax.linen", "imlejax.ksubset")

_ROLE = re.compile(r":(func|class|meth|attr|data|obj|exc|mod):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]*)`")
_MATH_BLOCK = re.compile(r"^(?P<indent> *)\.\. math::(?P<first>.*)$")
_LITERAL = re.compile(r"^(?P<indent> *)(?P<text>\S.*?)\s*::\s*$")
_EXAMPLE = re.compile(r"^(?P<indent> *)Example:\s*$")
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def _documented() -> set[str]:
    names = set(DOCUMENTED_MODULES)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names.update(f"{module_name}.{name}" for name in module.__all__)
    return names


def _public_module(path: str) -> str:
    for module_name in PUBLIC_MODULES:
        if path == module_name or path.startswith(module_name + "."):
            return module_name
    return "imlejax"


def _has_member(identifier: str) -> bool:
    """``pkg.Obj.member`` where ``pkg.Obj`` is documented and has a public ``member``."""
    owner, _, member = identifier.rpartition(".")
    if member.startswith("_"):
        return False
    module_name, _, name = owner.rpartition(".")
    try:
        return hasattr(getattr(importlib.import_module(module_name), name), member)
    except (ImportError, AttributeError):
        return False


class RstDocstrings(griffe.Extension):
    """Rewrites Sphinx roles and directives of docstrings as Markdown (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.documented = _documented()

    def resolve(self, name: str, context: str) -> str | None:
        """The documented identifier that ``name`` refers to in module ``context``, or None."""
        if name.startswith("imlejax."):
            candidates = [name]
        else:
            candidates = [f"{context}.{name}", f"imlejax.{name}"]
        for candidate in candidates:
            if candidate in self.documented:
                return candidate
            owner = candidate.rpartition(".")[0]
            if owner in self.documented and _has_member(candidate):
                return candidate
        return None

    def convert(self, text: str, context: str) -> str:
        """``text`` (a cleaned docstring) in Markdown."""
        text = self._blocks(text)
        text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)

        def role(match: re.Match[str]) -> str:
            kind, tilde, name = match.groups()
            shown = name.rpartition(".")[2] if tilde else name
            if kind in ("func", "meth"):
                shown += "()"
            target = self.resolve(name, context)
            return f"[`{shown}`][{target}]" if target else f"`{shown}`"

        return _ROLE.sub(role, text)

    @staticmethod
    def _indented_block(lines: list[str], start: int, indent: int) -> int:
        """Index past the block of lines indented more than ``indent`` (blank lines inside)."""
        end = start
        while end < len(lines):
            line = lines[end]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            end += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        return end

    def _blocks(self, text: str) -> str:
        lines = text.split("\n")
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            math = _MATH_BLOCK.match(line)
            literal = _LITERAL.match(line)
            example = _EXAMPLE.match(line)
            if math:
                pad = math.group("indent")
                end = self._indented_block(lines, i + 1, len(pad))
                body = [math.group("first").strip()] + [part.strip() for part in lines[i + 1 : end]]
                body = [part for part in body if part]
                out += ["", f"{pad}$$"] + [pad + part for part in body] + [f"{pad}$$", ""]
                i = end
            elif literal and not line.lstrip().startswith(".."):
                pad = literal.group("indent")
                out.append(f"{pad}{literal.group('text')}:")
                start = i + 1
                while start < len(lines) and not lines[start].strip():
                    start += 1
                end = self._indented_block(lines, start, len(pad))
                code = textwrap.dedent("\n".join(lines[start:end]))
                out += ["", f"{pad}```python"]
                out += [pad + part if part else "" for part in code.split("\n")]
                out += [f"{pad}```", ""]
                i = end
            elif example:
                out.append(f"{example.group('indent')}Examples:")
                i += 1
            else:
                out.append(line)
                i += 1
        return "\n".join(out)

    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        """Rewrites the docstring of every object griffe loads, and constant defaults."""
        if obj.docstring is not None:
            obj.docstring.value = self.convert(obj.docstring.value, _public_module(obj.path))
        if isinstance(obj, griffe.Function):
            for parameter in obj.parameters:
                name = str(parameter.default) if parameter.default is not None else ""
                if _CONSTANT.match(name):
                    module = importlib.import_module(obj.module.path)
                    if hasattr(module, name):
                        parameter.default = repr(getattr(module, name))
