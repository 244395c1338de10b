"""Multi-process data parallelism: two processes (``jax.distributed``, a localhost coordinator,
one CPU device each) train on one global batch sharded across them, and end with the parameters
of one process on two devices, bit for bit, and of one device to within the rounding of the
gradient's sum over the batch. Run by ``nox -s distributed``."""

import numpy as np
import pytest

from experiments.benchmarks import hlo
from experiments.distributed.__main__ import run_all
from experiments.distributed.config import PRESETS

pytestmark = pytest.mark.distributed


def test_two_processes_train_like_one_process(tmp_path):
    cfg = PRESETS["smoke"]
    summary = run_all(cfg, tmp_path, processes=2, local_devices=1, timeout=240)
    comparison = summary["comparison"]
    assert comparison["processes_agree_bitwise"]
    assert comparison["equals_one_process_same_devices_bitwise"]
    assert comparison["losses_equal_one_process_same_devices"]
    # On one device the parameter gradient sums over the batch in one dot product; on two it is
    # two partial sums added by the all-reduce: the parameters differ in the last bits only.
    assert comparison["max_abs_diff_to_one_device"] <= 1e-6
    assert comparison["max_abs_loss_diff_to_one_device"] == 0.0
    # Each process solves its own half of the batch (times the samples), with no all-gather.
    evidence = summary["hlo"]["distributed"]
    rows = [hlo.rows(c["operand"]) for c in evidence["oracle_calls"] if c["op"] == "TopK"]
    assert rows == [cfg.batch // 2 * cfg.samples] * 2
    assert evidence["collectives"]["all-gather"] == 0
    one_device = summary["hlo"]["one_device"]
    assert [hlo.rows(c["operand"]) for c in one_device["oracle_calls"]] == [
        cfg.batch * cfg.samples
    ] * 2
    assert np.isfinite(summary["losses"]).all()
