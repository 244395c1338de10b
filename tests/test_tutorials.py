"""Every tutorial of the documentation runs as written and passes its own assertions.

The tutorials (``docs/tutorials/<name>.py``) are scripts a reader runs as they are; each asserts
what it demonstrates (the learnt selector recovers the planted top-k, a Monte Carlo mean matches
a closed form, sharded samples equal one device's, ...). They run here in-process, with the
suite's strict configuration (warnings as errors, rank promotion raises, 4 host CPU devices), and
write their figures to a temporary directory instead of ``docs/figures/tutorials``.
"""

import pathlib
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
