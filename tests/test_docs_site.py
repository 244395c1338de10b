"""The documentation site's structure, checked as text (no mkdocs, no imports of the package).

* Every public name (``__all__`` of ``imlejax``, ``imlejax.ksubset``, ``imlejax.flax.nnx`` and
  ``imlejax.flax.linen``, read from the source) has a ``::: module.name`` directive in an API page,
  and every directive names a public object.
* Every page of the nav in ``mkdocs.yml`` exists, every tutorial page is in the nav, and every
  Markdown page under ``docs/`` is in the nav (strict builds reject pages left out of it).

The strict build itself (broken links, formulas, docstrings that fail to render) is
``nox -s docs``.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
# Public module -> the file whose ``__all__`` lists its names.
PUBLIC_MODULES = {
    "imlejax": ROOT / "imlejax" / "__init__.py",
    "imlejax.ksubset": ROOT / "imlejax" / "ksubset" / "__init__.py",
    "imlejax.flax.nnx": ROOT / "imlejax" / "flax" / "nnx.py",
    "imlejax.flax.linen": ROOT / "imlejax" / "flax" / "linen.py",
}
# Folders under docs/ that hold no pages of the site (mkdocs.yml: exclude_docs).
NOT_PAGES = ("_hooks",)
_DIRECTIVE = re.compile(r"^::: +([\w.]+)\s*$", re.M)
_NAV_ENTRY = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w./-]+\.md)\s*$")


def public_names(path: Path) -> list[str]:
    """The string entries of the module-level ``__all__`` in ``path``."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(elt) for elt in node.value.elts]
    raise AssertionError(f"{path} has no __all__")


def api_directives(api_dir: Path = API) -> set[str]:
    """The identifiers of every ``::: identifier`` directive in the API pages."""
    found = set()
    for page in sorted(api_dir.glob("*.md")):
        found.update(_DIRECTIVE.findall(page.read_text()))
    return found


def missing_from_api(directives: set[str]) -> list[str]:
    """Public names without a directive (a documented module counts for its name in its parent)."""
    missing = []
    for module, path in PUBLIC_MODULES.items():
        for name in public_names(path):
            if f"{module}.{name}" not in directives:
                missing.append(f"{module}.{name}")
    return missing


def nav_pages(config: Path = ROOT / "mkdocs.yml") -> list[str]:
    """The Markdown files of the ``nav:`` section of ``config``, in order."""
    lines = config.read_text().splitlines()
    start = lines.index("nav:")
    pages = []
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break  # the next top-level key
        match = _NAV_ENTRY.match(line)
        if match:
            pages.append(match.group(1))
    return pages


def site_pages() -> list[str]:
    """Every Markdown page under docs/, relative to docs/, except the folders of NOT_PAGES."""
    pages = []
    for path in sorted(DOCS.rglob("*.md")):
        rel = path.relative_to(DOCS).as_posix()
        if not any(rel == d or rel.startswith(d + "/") for d in NOT_PAGES):
            pages.append(rel)
    return pages


def test_every_public_name_is_in_the_api_reference():
    directives = api_directives()
    assert not missing_from_api(directives), (
        f"public names without a `::: name` directive in docs/api/*.md: "
        f"{missing_from_api(directives)}"
    )


def test_every_api_directive_names_a_public_object():
    public = {f"{m}.{n}" for m, path in PUBLIC_MODULES.items() for n in public_names(path)}
    public.update(PUBLIC_MODULES)  # the module pages
    unknown = sorted(api_directives() - public)
    assert not unknown, f"API pages document names that are not public: {unknown}"


def test_the_check_notices_a_name_removed_from_a_page(tmp_path):
    for page in API.glob("*.md"):
        (tmp_path / page.name).write_text(page.read_text())
    assert not missing_from_api(api_directives(tmp_path))
    page = tmp_path / "estimators.md"
    page.write_text(page.read_text().replace("::: imlejax.imle\n", ""))
    assert missing_from_api(api_directives(tmp_path)) == ["imlejax.imle"]


def test_the_nav_is_read_from_mkdocs_yml():
    pages = nav_pages()
    assert pages[0] == "index.md"
    assert "api/estimators.md" in pages and "changelog.md" in pages
    assert len(pages) == len(set(pages)), "a page appears twice in the nav"


@pytest.mark.parametrize("page", nav_pages())
def test_every_nav_page_exists(page):
    assert (DOCS / page).is_file(), f"mkdocs.yml's nav names docs/{page}, which does not exist"


def test_every_tutorial_and_page_is_in_the_nav():
    nav = set(nav_pages())
    tutorials = [p for p in site_pages() if p.startswith("tutorials/")]
    missing_tutorials = [p for p in tutorials if p not in nav]
    assert not missing_tutorials, f"tutorial pages missing from the nav: {missing_tutorials}"
    missing = [p for p in site_pages() if p not in nav]
    assert not missing, f"pages under docs/ missing from mkdocs.yml's nav: {missing}"
