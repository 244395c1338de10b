"""The PyTorch side-by-side benchmark runs end to end on a tiny problem (timings not asserted)."""

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[compare]')")

from experiments.benchmarks import compare  # noqa: E402

TINY = ["--batch", "2", "3", "--m", "12", "--k", "3", "--samples", "2", "--repeats", "2"]


def test_compare_runs_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "compare.json"
    compare.main([*TINY, "--json", str(out)])
    printed = capsys.readouterr().out
    assert "torch / imlejax" in printed
    result = json.loads(out.read_text())
    ratios = result["ratios_torch_over_imlejax"]
    for name in ("gumbel gradient", "sog gradient", "one top-k call (B * S rows)"):
        for batch in (2, 3):
            for threads in (1, 2):
                assert ratios[f"B={batch} {name}, torch {threads} thread(s)"]["median"] > 0
    diffs = result["checks"]["max_gradient_difference"]
    assert set(diffs) == {"none", "gumbel", "sog"} and max(diffs.values()) <= 1e-6


def test_torch_gradient_is_the_imle_gradient_by_hand():
    """The PyTorch layer: sum_s (topk(theta + eps_s) - topk(theta - lam g_s + eps_s)) / lam."""
    import torch

    theta = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    eps = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -3.0, 0.0]]])
    w = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    grad = compare.torch_gradient(compare.torch_imle_function(2, 10.0), theta, w, lambda: eps)
    # sample 1: {2, 3} forward; the target lowers item 2 by 10: {0, 3}; sample 2: {0, 3} both
    np.testing.assert_allclose(grad.numpy(), [[-0.1, 0.0, 0.1, 0.0]])


def test_mismatched_gradients_are_refused(monkeypatch):
    # a PyTorch layer with another lambda solves other targets: the equality check fails
    original = compare.torch_imle_function
    monkeypatch.setattr(compare, "torch_imle_function", lambda k, lam: original(k, 0.5 * lam))
    with pytest.raises(AssertionError, match="gradients differ"):
        compare.check_equal(2, 12, 3, 2, 10.0)  # a configuration of TINY
