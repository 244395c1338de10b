"""Loader of ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV_VAR = "IMLEJAX_MNIST"
EXPECTED_KEYS = ("x_train", "y_train", "x_test", "y_test")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = REPO_ROOT.parent / "shared" / "data" / "mnist" / "mnist.npz"


class MNIST(NamedTuple):
    """Flattened images in ``[0, 1]`` (float32, shape ``(N, 784)``) and labels (int32)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$IMLEJAX_MNIST``, else ``../shared/data/mnist/mnist.npz`` from the repo."""
    if path is None:
        path = os.environ.get(ENV_VAR) or DEFAULT_PATH
    return Path(path).expanduser()


def _error(path: Path, what: str) -> ValueError:
    return ValueError(
        f"{path}: {what}. Expected an .npz file with keys {', '.join(EXPECTED_KEYS)}: x_train "
        "(N, 28, 28) and x_test (M, 28, 28) uint8 images in 0..255, y_train (N,) and y_test (M,) "
        f"labels (the standard mnist.npz layout). Pass --data PATH or set {ENV_VAR}."
    )


def load_mnist(path: str | os.PathLike | None = None) -> MNIST:
    """Loads MNIST from ``mnist.npz``; images are scaled to ``[0, 1]`` (not binarised).

    Raises:
      FileNotFoundError: if the file does not exist (the message names the path and the keys).
      ValueError: if the file is not an ``.npz`` archive with the expected keys and shapes.
    """
    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MNIST file not found: {path}. Expected an .npz file with keys "
            f"{', '.join(EXPECTED_KEYS)} (the standard mnist.npz layout). Pass --data PATH or set "
            f"{ENV_VAR}."
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise _error(path, f"not a readable .npz archive ({err})") from err
    with archive:
        missing = [k for k in EXPECTED_KEYS if k not in archive.files]
        if missing:
            raise _error(path, f"missing key(s) {', '.join(missing)} (found {archive.files})")
        arrays = {k: archive[k] for k in EXPECTED_KEYS}
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise _error(path, f"x_{split} has shape {x.shape}, not (N, 28, 28)")
        if y.shape != (x.shape[0],):
            raise _error(path, f"y_{split} has shape {y.shape}, not ({x.shape[0]},)")
        if x.dtype == np.uint8:
            xf = x.astype(np.float32) / 255.0
        else:
            xf = x.astype(np.float32)
            if xf.size and (xf.min() < 0 or xf.max() > 1):
                raise _error(path, f"x_{split} is {x.dtype} outside [0, 1]")
        out[f"x_{split}"] = xf.reshape(x.shape[0], 784)
        out[f"y_{split}"] = y.astype(np.int32)
    return MNIST(**out)


def write_fake_mnist(path: str | os.PathLike, n_train: int = 200, n_test: int = 100, seed: int = 0):
    """Writes a small random file in the ``mnist.npz`` layout (for tests and smoke runs)."""
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    return Path(path)
