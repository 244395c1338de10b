"""Loader of the Warcraft shortest-path data set in its original layout.

The files (Vlastelica, Paulus et al., ICLR 2020; the data of the I-MLE paper, appendix C.4)::

    warcraft_shortest_path_oneskin/{K}x{K}/{split}_maps.npy             (N, 8K, 8K, 3) uint8
    warcraft_shortest_path_oneskin/{K}x{K}/{split}_vertex_weights.npy   (N, K, K) float
    warcraft_shortest_path_oneskin/{K}x{K}/{split}_shortest_paths.npy   (N, K, K) 0/1

for ``K`` in 12, 18, 24, 30 and ``split`` in train, val, test (N = 10000, 1000, 1000). For
``K >= 18`` the training files come in two halves, ``train_{field}_part0.npy`` and
``train_{field}_part1.npy``, joined here on axis 0 (a merged ``train_{field}.npy`` is read as
well). Each tile of the map is an 8 x 8 pixel block; the vertex weight is its cost, and the
shortest path is the minimum-cost 8-connected path from the top-left to the bottom-right tile,
both end tiles counted.

The data is never downloaded: pass the folder with ``--data DIR`` or the environment variable
``IMLEJAX_WARCRAFT_DATA``; ``DIR`` is either ``warcraft_shortest_path_oneskin`` itself or a folder
that contains it. ``python -m experiments.warcraft.generate`` writes generated stand-in data in
exactly this layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV_VAR = "IMLEJAX_WARCRAFT_DATA"
DATASET_DIR = "warcraft_shortest_path_oneskin"
SIZES = (12, 18, 24, 30)
SPLITS = ("train", "val", "test")
FIELDS = ("maps", "vertex_weights", "shortest_paths")
TILE = 8  # pixels per tile side
PARTS_FROM = 18  # grid sizes from which the training files come in two halves
REPO_ROOT = Path(__file__).resolve().parents[2]


class Split(NamedTuple):
    """One split: ``maps`` (N, 8K, 8K, 3) uint8, ``weights`` and ``paths`` (N, K, K) float32."""

    maps: np.ndarray
    weights: np.ndarray
    paths: np.ndarray

    @property
    def n(self) -> int:
        """The number of maps."""
        return int(self.maps.shape[0])


class Warcraft(NamedTuple):
    """The three splits of one grid size ``k``, read from ``folder``."""

    k: int
    train: Split
    val: Split
    test: Split
    folder: Path


def resolve_root(path: str | os.PathLike | None = None) -> Path:
    """The ``warcraft_shortest_path_oneskin`` folder: ``path``, else ``$IMLEJAX_WARCRAFT_DATA``.

    A ``path`` that contains a ``warcraft_shortest_path_oneskin`` folder resolves to that folder.

    Raises:
      FileNotFoundError: if neither ``path`` nor the environment variable is given.
    """
    if path is None:
        path = os.environ.get(ENV_VAR)
    if not path:
        raise FileNotFoundError(
            f"No Warcraft data folder given: pass --data DIR or set {ENV_VAR}. DIR is the "
            f"{DATASET_DIR} folder (with {{K}}x{{K}}/ subfolders) or a folder containing it; "
            "`python -m experiments.warcraft.generate --out DIR` writes generated stand-in data."
        )
    path = Path(path).expanduser()
    return path / DATASET_DIR if (path / DATASET_DIR).is_dir() else path


def grid_dir(root: Path, k: int) -> Path:
    """``root/{k}x{k}``."""
    return Path(root) / f"{k}x{k}"


def expected_shape(field: str, k: int) -> tuple[str, ...]:
    """The expected shape of ``field`` as text, e.g. ``("N", "96", "96", "3")``."""
    if field == "maps":
        return ("N", str(TILE * k), str(TILE * k), "3")
    return ("N", str(k), str(k))


def _describe(field: str, k: int) -> str:
    shape = "(" + ", ".join(expected_shape(field, k)) + ")"
    kind = {
        "maps": "uint8 RGB images (values 0..255)",
        "vertex_weights": "non-negative float tile costs",
        "shortest_paths": "0/1 path indicators with both end tiles on the path",
    }[field]
    return f"{shape} {kind}"


def _load_npy(file: Path, field: str, k: int) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(
            f"{file}: not a readable .npy array ({err}); expected {_describe(field, k)}."
        ) from err


def field_files(folder: Path, split: str, field: str, k: int) -> list[Path]:
    """The file(s) of ``split``'s ``field``: one file, or the two training halves.

    Raises:
      FileNotFoundError: naming the file(s) looked for.
    """
    single = folder / f"{split}_{field}.npy"
    if single.is_file():
        return [single]
    parts = [folder / f"{split}_{field}_part{i}.npy" for i in (0, 1)]
    present = [p.is_file() for p in parts]
    if split == "train" and all(present):
        return parts
    if split == "train" and any(present):
        missing = parts[present.index(False)]
        raise FileNotFoundError(
            f"{missing} is missing: the training files come in two halves, {parts[0].name} and "
            f"{parts[1].name}, joined on axis 0 (each {_describe(field, k)})."
        )
    if split == "train" and k >= PARTS_FROM:
        what = f"{single.name}, or its halves {parts[0].name} and {parts[1].name}"
    else:
        what = single.name
    raise FileNotFoundError(
        f"Warcraft file not found: {single}. Expected {what} in {folder} holding "
        f"{_describe(field, k)}. Pass --data DIR or set {ENV_VAR}."
    )


def _read_field(folder: Path, split: str, field: str, k: int, limit: int | None) -> np.ndarray:
    files = field_files(folder, split, field, k)
    arrays = []
    for file in files:
        a = _load_npy(file, field, k)
        want = expected_shape(field, k)
        if a.ndim != len(want) or tuple(str(s) for s in a.shape[1:]) != want[1:]:
            shape = "(" + ", ".join(want) + ")"
            raise ValueError(f"{file}: shape {a.shape}, expected {shape} ({_describe(field, k)}).")
        arrays.append(a)
    total = sum(a.shape[0] for a in arrays)
    n = total if limit is None else min(limit, total)
    out, left = [], n
    for a in arrays:  # read only the first ``n`` rows of the (memory-mapped) halves
        take = min(left, a.shape[0])
        out.append(np.asarray(a[:take]))
        left -= take
    joined = np.concatenate(out, axis=0) if len(out) > 1 else out[0]
    return _cast(joined, files, field, k)


def _cast(a: np.ndarray, files: list[Path], field: str, k: int) -> np.ndarray:
    name = " + ".join(str(f) for f in files)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name}: dtype {a.dtype}, expected {_describe(field, k)}.")
    if field == "maps":
        if a.dtype == np.uint8:
            return a
        if a.size and (a.min() < 0 or a.max() > 255 or np.any(a != np.round(a))):
            raise ValueError(f"{name}: values outside the integers 0..255 ({_describe(field, k)}).")
        return a.astype(np.uint8)
    af = a.astype(np.float32)
    if not np.all(np.isfinite(af)):
        raise ValueError(f"{name}: non-finite values; expected {_describe(field, k)}.")
    if field == "vertex_weights" and af.size and af.min() < 0:
        raise ValueError(f"{name}: negative costs; expected {_describe(field, k)}.")
    if field == "shortest_paths" and af.size:
        if not np.all((af == 0) | (af == 1)):
            raise ValueError(f"{name}: values other than 0 and 1; expected {_describe(field, k)}.")
        if af[:, 0, 0].min() < 1 or af[:, -1, -1].min() < 1:
            raise ValueError(f"{name}: an end tile off the path; expected {_describe(field, k)}.")
    return af


def load_split(folder: Path, split: str, k: int, limit: int | None = None) -> Split:
    """Reads one split from ``folder`` (the ``{K}x{K}`` folder); ``limit`` keeps the first rows.

    Raises:
      FileNotFoundError: a file is missing (the message names it and the expected content).
      ValueError: a file is unreadable, has a wrong shape, dtype or values, or the three files
        disagree on the number of maps.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1; got {limit!r}.")
    arrays = {f: _read_field(folder, split, f, k, limit) for f in FIELDS}
    counts = {f: a.shape[0] for f, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(
            f"{folder}: the {split} files disagree on the number of maps N: "
            + ", ".join(f"{split}_{f}: {n}" for f, n in counts.items())
            + "."
        )
    return Split(arrays["maps"], arrays["vertex_weights"], arrays["shortest_paths"])


def load_warcraft(
    path: str | os.PathLike | None = None,
    k: int = 12,
    *,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
) -> Warcraft:
    """Loads the three splits of the ``k x k`` maps.

    Args:
      path: the ``warcraft_shortest_path_oneskin`` folder or a folder containing it (default:
        ``$IMLEJAX_WARCRAFT_DATA``).
      k: grid size; the original data has 12, 18, 24 and 30 (any size >= 2 is read).
      max_train: keep only the first ``max_train`` training maps (``None``: all); likewise
        ``max_val`` and ``max_test``.

    Returns:
      A :class:`Warcraft` with maps as uint8 and weights and paths as float32.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2 (the data has {SIZES}); got {k!r}.")
    root = resolve_root(path)
    folder = grid_dir(root, int(k))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Warcraft folder not found: {folder}. Expected {{train,val,test}}_{{"
            f"{','.join(FIELDS)}}}.npy for {k}x{k} maps there (the {DATASET_DIR} layout). "
            f"Pass --data DIR or set {ENV_VAR}."
        )
    return Warcraft(
        k=int(k),
        train=load_split(folder, "train", int(k), max_train),
        val=load_split(folder, "val", int(k), max_val),
        test=load_split(folder, "test", int(k), max_test),
        folder=folder,
    )


def channel_stats(maps: np.ndarray, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 ``maps`` (N, H, W, 3) in [0, 255].

    Accumulated in float64 over chunks, so the whole set is never held as floats.
    """
    total = np.zeros(maps.shape[-1], np.float64)
    total_sq = np.zeros(maps.shape[-1], np.float64)
    count = 0
    for i in range(0, maps.shape[0], chunk):
        x = maps[i : i + chunk].astype(np.float64).reshape(-1, maps.shape[-1])
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += x.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
