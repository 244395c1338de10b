"""Every tutorial of the documentation runs as written and passes its own assertions.

The tutorials (``docs/tutorials/<name>.py``) are scripts a reader runs as they are; each asserts
what it demonstrates (the learnt selector recovers the planted top-k, a Monte Carlo mean matches
a closed form, sharded samples equal one device's, ...). They run here in-process, with the
suite's strict configuration (warnings as errors, rank promotion raises, 4 host CPU devices), and
write their figures to a temporary directory instead of ``docs/figures/tutorials``.
"""

import pathlib
import re
import runpy

import matplotlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"

# name -> the figures it writes
EXPECTED = {
    "top_k": ["top_k_training.png"],
    "host_oracle": ["host_oracle_matching.png"],
    "shortest_path": ["shortest_path_grids.png"],
    "flax_nnx": ["flax_nnx_selection.png"],
    "aimle_loop": ["aimle_loop_traces.png"],
    "check_gradient": [],
    "sharding": [],
}


def test_every_tutorial_page_has_a_script_and_an_output():
    pages = {p.stem for p in TUTORIALS.glob("*.md") if p.stem != "index"}
    assert pages == set(EXPECTED)
    for name in EXPECTED:
        assert (TUTORIALS / f"{name}.py").is_file()
        assert (TUTORIALS / "output" / f"{name}.txt").is_file()
        for figure in EXPECTED[name]:
            assert (ROOT / "docs" / "figures" / "tutorials" / figure).is_file()


SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)


def test_pages_include_their_script_sections_and_output():
    """Every include of a page names an existing file and section (pymdownx.snippets syntax)."""
    pages = [TUTORIALS / f"{name}.md" for name in EXPECTED]
    pages += [ROOT / "docs" / "concepts.md", ROOT / "docs" / "choosing.md"]
    for page in pages:
        text = page.read_text()
        assert "--8 <" not in text and "8<- " not in text, page  # no mangled include line
        includes = SNIPPET.findall(text)
        assert any(i.startswith("docs/tutorials/output/") for i in includes), page
        for include in includes:
            path, _, section = include.partition(":")
            assert (ROOT / path).is_file(), include
            if section:
                script = (ROOT / path).read_text()
                assert f"# --8<-- [start:{section}]" in script, include
                assert f"# --8<-- [end:{section}]" in script, include
    for name in EXPECTED:
        includes = SNIPPET.findall((TUTORIALS / f"{name}.md").read_text())
        assert f"docs/tutorials/output/{name}.txt" in includes
        assert any(i.startswith(f"docs/tutorials/{name}.py:") for i in includes)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_tutorial_runs(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMLEJAX_TUTORIAL_FIGURES", str(tmp_path))
    matplotlib.use("Agg")
    runpy.run_path(str(TUTORIALS / f"{name}.py"), run_name="__main__")
    assert capsys.readouterr().out.strip()
    for figure in EXPECTED[name]:
        assert (tmp_path / figure).stat().st_size > 1000


@pytest.mark.slow
def test_concepts_figures(tmp_path, monkeypatch):
    """The Concepts page's script at a tenth of its sample size (its assertions hold there)."""
    monkeypatch.setenv("IMLEJAX_CONCEPTS_FIGURES", str(tmp_path))
    matplotlib.use("Agg")
    module = runpy.run_path(str(TUTORIALS / "concepts_figures.py"))
    module["main"](["--samples", "20000"])
    for name in ("argmax", "ksubset", "sog_sum", "lambda"):
        assert (tmp_path / f"concepts_{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_choosing_evidence(capsys):
    module = runpy.run_path(str(TUTORIALS / "choosing_evidence.py"))
    module["main"](["--keys", "200"])
    out = capsys.readouterr().out
    assert "sfe, 4 samples, mean baseline" in out and "gumbel_softmax" in out
