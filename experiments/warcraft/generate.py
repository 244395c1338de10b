"""Generated stand-in for the Warcraft shortest-path data, in exactly the original layout.

Usage::

    python -m experiments.warcraft.generate --out DIR --sizes 12 \
        --n-train 10000 --n-val 1000 --n-test 1000 --seed 0

writes ``DIR/warcraft_shortest_path_oneskin/{K}x{K}/{train,val,test}_{maps,vertex_weights,
shortest_paths}.npy`` (the training files of ``K >= 18`` as ``_part0``/``_part1`` halves, as in
the original) and ``DIR/warcraft_shortest_path_oneskin/GENERATED.json`` recording how the data
was made, so that results on it are labelled "generated stand-in".

How a map is made (all steps vectorised over maps):

* **Terrain.** ``ceil(K^2 / 12)`` seed points per map, each with a terrain class drawn with
  probabilities :data:`CLASS_PROBS`; every tile takes the class of the nearest seed after its
  coordinates are displaced by a smooth random field (a coarse grid of offsets, bilinearly
  upsampled), so that the regions are contiguous with irregular borders.
* **Costs.** Five classes with the costs :data:`COSTS` = {0.8, 1.2, 5.3, 7.7, 9.2}.
* **Pixels.** One "skin" per data set (shared by all splits, like the original's one skin):
  :data:`VARIANTS` procedural 8 x 8 textures per class (speckled grass, grainy sand, forest with
  tree crowns, rock with ridges, water with waves). Each tile picks a variant at random, one of
  the 8 flips/rotations, a brightness and a tint, and gets pixel noise; the classes' colour
  ranges overlap, so the cost must be read from the texture, not from one pixel. The pixel noise
  of a tile is one of 4096 Gaussian patterns drawn per chunk of maps.
* **Labels.** The minimum-cost 8-connected path from the top-left to the bottom-right tile with
  vertex costs (both end tiles counted), from SciPy's Dijkstra
  (:func:`scipy.sparse.csgraph.dijkstra`) on a graph whose edge ``u -> v`` weighs ``w[v]``, run
  once per chunk of maps from a super-source joined to every map's first tile.

Generation is deterministic given ``--seed``: chunk ``c`` of split ``s`` of size ``K`` draws from
``numpy.random.default_rng([seed, K, s, c])``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph

from experiments.warcraft.data import DATASET_DIR, PARTS_FROM, SPLITS, TILE, grid_dir

COSTS = np.array([0.8, 1.2, 5.3, 7.7, 9.2], np.float32)
CLASS_NAMES = ("grass", "sand", "forest", "rock", "water")
CLASS_PROBS = np.array([0.3, 0.2, 0.2, 0.15, 0.15])
VARIANTS = 6  # textures per class
CHUNK = 1000  # maps generated at once
NOISE_BANK = 4096  # pixel-noise patterns drawn per chunk
MARKER = "GENERATED.json"
GENERATOR_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Textures
# ------------------------------------------------------------------------------------------------

_BASE = np.array(
    [[88, 150, 60], [200, 182, 120], [48, 104, 44], [128, 116, 104], [48, 88, 168]], np.float32
)


def make_skin(rng: np.random.Generator, variants: int = VARIANTS) -> np.ndarray:
    """Procedural textures, shape ``(5, variants, 8, 8, 3)`` float32 in (about) [0, 255]."""
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    skin = np.zeros((len(COSTS), variants, TILE, TILE, 3), np.float32)
    for v in range(variants):
        # grass: speckles of lighter and darker blades
        t = _BASE[0] + rng.normal(0, 8, (TILE, TILE, 1)) * np.array([0.6, 1.0, 0.5])
        blades = rng.random((TILE, TILE)) < 0.2
        t[blades] += np.array([30, 40, 15]) * rng.choice([-1.0, 1.0], (blades.sum(), 1))
        skin[0, v] = t
        # sand: fine grain, a few pebbles, a soft gradient
        angle = rng.uniform(0, 2 * np.pi)
        grad = (np.cos(angle) * (xx - 3.5) + np.sin(angle) * (yy - 3.5))[..., None] * 3.0
        t = _BASE[1] + grad + rng.normal(0, 7, (TILE, TILE, 1))
        pebbles = rng.random((TILE, TILE)) < 0.08
        t[pebbles] -= 45
        skin[1, v] = t
        # forest: two or three tree crowns, dark centres and a lit upper-left rim
        t = np.broadcast_to(_BASE[2] * 0.8, (TILE, TILE, 3)).copy()
        for _ in range(rng.integers(2, 4)):
            cy, cx, r = rng.uniform(1, 7), rng.uniform(1, 7), rng.uniform(1.8, 3.0)
            d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            crown = d < r
            lit = crown & ((yy - cy) + (xx - cx) < -0.5 * r)
            t[crown] = _BASE[2] * 1.15
            t[lit] += np.array([25, 35, 15])
            t[crown & (d < 0.6)] = _BASE[2] * 0.55
        skin[2, v] = t + rng.normal(0, 5, (TILE, TILE, 1))
        # rock: ridges at a random angle, a dark crack and a lit edge beside it
        a = rng.uniform(0, np.pi)
        line = np.cos(a) * (xx - 3.5) + np.sin(a) * (yy - 3.5) - rng.uniform(-2, 2)
        t = _BASE[3] + rng.normal(0, 9, (TILE, TILE, 1))
        t[np.abs(line) < 0.6] -= 50
        t[(line >= 0.6) & (line < 1.6)] += 30
        skin[3, v] = t
        # water: wave streaks
        period, phase, tilt = rng.uniform(3, 5), rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
        wave = np.sin(2 * np.pi * (yy + tilt * xx) / period + phase)[..., None]
        skin[4, v] = _BASE[4] + wave * np.array([10, 18, 28]) + rng.normal(0, 4, (TILE, TILE, 1))
    return skin


def _dihedral(skin: np.ndarray) -> np.ndarray:
    """The 8 flips/rotations of each texture: ``(..., 8, 8, 8, 3)`` (transform axis first)."""
    out = []
    for flip in (False, True):
        s = skin[..., ::-1, :] if flip else skin
        for r in range(4):
            out.append(np.rot90(s, r, axes=(-3, -2)))
    return np.stack(out, axis=-4)


# ------------------------------------------------------------------------------------------------
# Terrain and pixels
# ------------------------------------------------------------------------------------------------


def terrain(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Terrain classes ``(n, k, k)`` int8: warped nearest-seed regions."""
    seeds = math.ceil(k * k / 12)
    points = rng.uniform(0, k, (n, seeds, 2)).astype(np.float32)
    classes = rng.choice(len(COSTS), size=(n, seeds), p=CLASS_PROBS).astype(np.int8)
    coarse = k // 3 + 2
    offsets = rng.normal(0, 1.2, (n, 2, coarse, coarse)).astype(np.float32)
    field = scipy.ndimage.zoom(offsets, (1, 1, k / coarse, k / coarse), order=1)[..., :k, :k]
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float32) + 0.5
    py = (yy[None] + field[:, 0]).reshape(n, k * k, 1)
    px = (xx[None] + field[:, 1]).reshape(n, k * k, 1)
    d2 = (py - points[:, None, :, 0]) ** 2 + (px - points[:, None, :, 1]) ** 2
    nearest = np.argmin(d2, axis=-1)
    return np.take_along_axis(classes, nearest, axis=1).reshape(n, k, k)


def render(rng: np.random.Generator, classes: np.ndarray, skin8: np.ndarray) -> np.ndarray:
    """Pixels ``(n, 8k, 8k, 3)`` uint8 of the terrain ``classes`` ``(n, k, k)``."""
    n, k, _ = classes.shape
    variant = rng.integers(0, skin8.shape[1], (n, k, k))
    transform = rng.integers(0, 8, (n, k, k))
    tiles = skin8[classes, variant, transform]  # (n, k, k, 8, 8, 3)
    brightness = rng.uniform(0.75, 1.25, (n, k, k, 1, 1, 1)).astype(np.float32)
    tint = rng.normal(1.0, 0.05, (n, k, k, 1, 1, 3)).astype(np.float32)
    offset = rng.normal(0.0, 6.0, (n, k, k, 1, 1, 1)).astype(np.float32)
    # Pixel noise: one of NOISE_BANK Gaussian 8 x 8 x 3 patterns per tile (drawn per chunk).
    bank = rng.standard_normal((NOISE_BANK, TILE, TILE, 3), dtype=np.float32) * np.float32(6.0)
    pixels = tiles * (brightness * tint) + offset
    pixels += bank[rng.integers(0, NOISE_BANK, (n, k, k))]
    np.clip(np.rint(pixels, out=pixels), 0, 255, out=pixels)
    return pixels.astype(np.uint8).transpose(0, 1, 3, 2, 4, 5).reshape(n, k * TILE, k * TILE, 3)


# ------------------------------------------------------------------------------------------------
# Labels: SciPy's Dijkstra
# ------------------------------------------------------------------------------------------------


def grid_edges(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed 8-neighbourhood edges ``(src, dst)`` of a ``k x k`` grid (row-major nodes)."""
    r, c = np.divmod(np.arange(k * k), k)
    src, dst = [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            ok = (r + dr >= 0) & (r + dr < k) & (c + dc >= 0) & (c + dc < k)
            src.append(np.flatnonzero(ok))
            dst.append((r[ok] + dr) * k + c[ok] + dc)
    return np.concatenate(src), np.concatenate(dst)


def shortest_paths(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost paths of positive vertex costs ``weights`` ``(n, k, k)``.

    Returns ``(paths, costs)``: 0/1 indicators ``(n, k, k)`` uint8 of an optimal path from tile
    ``(0, 0)`` to ``(k-1, k-1)`` (8-neighbourhood) and their costs ``(n,)`` float64 (the sum of the
    costs of the tiles on the path, both ends included).
    """
    n, k, _ = weights.shape
    w = weights.reshape(n, k * k).astype(np.float64)
    if w.size and w.min() <= 0:
        raise ValueError("shortest_paths needs positive vertex costs.")
    m = k * k
    src, dst = grid_edges(k)
    offs = (np.arange(n) * m)[:, None]
    source = n * m  # super-source, joined to every map's first tile
    rows = np.concatenate([(src[None] + offs).ravel(), np.full(n, source)])
    cols = np.concatenate([(dst[None] + offs).ravel(), offs[:, 0]])
    data = np.concatenate([w[:, dst].ravel(), w[:, 0]])
    graph = scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n * m + 1, n * m + 1))
    dist, pred = scipy.sparse.csgraph.dijkstra(
        graph, directed=True, indices=source, return_predecessors=True
    )
    paths = np.zeros(n * m + 1, np.uint8)
    cur = offs[:, 0] + m - 1
    active = np.ones(n, bool)
    for _ in range(m):  # walk every map's predecessor chain back to its first tile at once
        paths[cur[active]] = 1
        active &= cur != offs[:, 0]
        if not active.any():
            break
        cur = np.where(active, pred[cur], cur)
    costs = dist[offs[:, 0] + m - 1]
    return paths[: n * m].reshape(n, k, k), costs


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def generate_split(seed: int, k: int, split: str, n: int, skin8: np.ndarray):
    """``(maps, weights, paths)`` of ``n`` maps of size ``k`` (deterministic given the seed)."""
    maps = np.empty((n, k * TILE, k * TILE, 3), np.uint8)
    weights = np.empty((n, k, k), np.float32)
    paths = np.empty((n, k, k), np.uint8)
    for c, start in enumerate(range(0, n, CHUNK)):
        stop = min(start + CHUNK, n)
        rng = np.random.default_rng([seed, k, SPLITS.index(split), c])
        classes = terrain(rng, stop - start, k)
        maps[start:stop] = render(rng, classes, skin8)
        weights[start:stop] = COSTS[classes]
        paths[start:stop] = shortest_paths(weights[start:stop])[0]
    return maps, weights, paths


def write_size(root: Path, k: int, counts: dict[str, int], seed: int) -> dict[str, float]:
    """Writes the three splits of size ``k`` under ``root``; returns seconds per split."""
    folder = grid_dir(root, k)
    folder.mkdir(parents=True, exist_ok=True)
    skin8 = _dihedral(make_skin(np.random.default_rng([seed, 7919])))
    seconds = {}
    for split in SPLITS:
        t0 = time.perf_counter()
        arrays = generate_split(seed, k, split, counts[split], skin8)
        for field, a in zip(("maps", "vertex_weights", "shortest_paths"), arrays, strict=True):
            for stale in folder.glob(f"{split}_{field}*.npy"):
                stale.unlink()
            if split == "train" and k >= PARTS_FROM:
                half = (a.shape[0] + 1) // 2
                np.save(folder / f"{split}_{field}_part0.npy", a[:half])
                np.save(folder / f"{split}_{field}_part1.npy", a[half:])
            else:
                np.save(folder / f"{split}_{field}.npy", a)
        seconds[split] = time.perf_counter() - t0
    return seconds


def generate(
    out: str | Path, sizes=(12,), n_train=10000, n_val=1000, n_test=1000, seed=0, verbose=False
) -> Path:
    """Writes the generated stand-in data under ``out``; returns the data set folder."""
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    for split, n in counts.items():
        if n < 1:
            raise ValueError(f"n_{split} must be >= 1; got {n}.")
    for k in sizes:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"sizes must be integers >= 2; got {k!r}.")
    root = Path(out) / DATASET_DIR
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    meta = json.loads(marker.read_text()) if marker.exists() else {"sizes": {}}
    for k in sizes:
        seconds = write_size(root, int(k), counts, int(seed))
        meta["sizes"][f"{k}x{k}"] = {"seed": int(seed), **{f"n_{s}": counts[s] for s in SPLITS}}
        if verbose:
            times = ", ".join(f"{s} {t:.1f} s" for s, t in seconds.items())
            print(f"{k}x{k}: {times}", flush=True)
    meta.update(
        generator="experiments.warcraft.generate",
        version=GENERATOR_VERSION,
        label="generated stand-in",
        costs=[float(c) for c in COSTS],
        classes=list(CLASS_NAMES),
        class_probs=[float(p) for p in CLASS_PROBS],
    )
    marker.write_text(json.dumps(meta, indent=1))
    return root


def is_generated(folder: str | Path) -> bool:
    """Whether ``folder`` (a ``{K}x{K}`` folder or the data set root) holds generated data."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or (folder.parent / MARKER).is_file()


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.warcraft.generate",
        description="Generated stand-in Warcraft maps in the original file layout.",
    )
    parser.add_argument("--out", required=True, help="folder to write DATASET/{K}x{K}/ into")
    parser.add_argument("--sizes", type=int, nargs="+", default=[12])
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    root = generate(
        args.out, args.sizes, args.n_train, args.n_val, args.n_test, args.seed, verbose=True
    )
    print(f"wrote {root} in {time.perf_counter() - t0:.1f} s (generated stand-in)")
    return root


if __name__ == "__main__":
    main(sys.argv[1:])
