"""Multi-process data parallelism: processes started with ``jax.distributed`` (a localhost
coordinator, CPU devices in each) train on one global batch sharded across them and end with the
parameters of one process. Run by ``nox -s distributed``."""

import dataclasses

import numpy as np
import pytest

from experiments.benchmarks import hlo
from experiments.distributed.__main__ import run_all
from experiments.distributed.config import PRESETS

pytestmark = pytest.mark.distributed


def _topk_rows(evidence):
    return [hlo.rows(c["operand"]) for c in evidence["oracle_calls"] if c["op"] == "TopK"]


def test_two_processes_train_like_one_process(tmp_path):
    """XLA all-reduces the parameter gradient: bit for bit the run of one process on as many
    devices; on one device the gradient's sum over the batch is added in another order, so the
    parameters differ in the last bits (after these few steps; the runs drift apart later)."""
    cfg = PRESETS["smoke"]
    summary = run_all(cfg, tmp_path, processes=2, local_devices=1, timeout=240)
    comparison = summary["comparison"]
    assert comparison["processes_agree_bitwise"]
    assert comparison["equals_one_process_same_devices_bitwise"]
    assert comparison["losses_equal_one_process_same_devices"]
    assert 0 < comparison["max_abs_diff_to_one_device"] <= 1e-6
    # Each process solves its own half of the batch (times the samples), with no all-gather.
    evidence = summary["hlo"]["distributed"]
    assert _topk_rows(evidence) == [cfg.batch // 2 * cfg.samples] * 2
    assert evidence["collectives"]["all-gather"] == 0
    assert evidence["collectives"]["all-reduce"] == 1
    assert _topk_rows(summary["hlo"]["one_device"]) == [cfg.batch * cfg.samples] * 2
    assert np.isfinite(summary["losses"]).all()


def test_ordered_reduction_equals_one_device_bitwise(tmp_path):
    """Per-example gradients gathered and reduced in one order: two processes with two devices
    each give the one-device parameters bit for bit."""
    cfg = dataclasses.replace(PRESETS["smoke"], ordered=True)
    summary = run_all(cfg, tmp_path, processes=2, local_devices=2, timeout=240)
    comparison = summary["comparison"]
    assert comparison["processes_agree_bitwise"]
    assert comparison["equals_one_process_same_devices_bitwise"]
    assert comparison["equals_one_device_bitwise"]
    assert comparison["max_abs_loss_diff_to_one_device"] == 0.0
    assert _topk_rows(summary["hlo"]["distributed"]) == [cfg.batch // 4 * cfg.samples] * 2
