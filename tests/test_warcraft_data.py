"""Warcraft data: the generator's layout and labels, the loader, its part join and its errors."""

import json

import networkx as nx
import numpy as np
import pytest

from experiments.warcraft import generate as gen
from experiments.warcraft.data import (
    DATASET_DIR,
    ENV_VAR,
    channel_stats,
    load_split,
    load_warcraft,
    resolve_root,
)

COUNTS = dict(n_train=12, n_val=6, n_test=5)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Generated files for 12x12 and 18x18 (the latter with the training halves)."""
    out = tmp_path_factory.mktemp("warcraft")
    gen.generate(out, sizes=(12, 18), seed=3, **COUNTS)
    return out


def _nx_cost(w: np.ndarray) -> float:
    """Optimal path cost by networkx (vertex costs on the edge heads, plus the first tile)."""
    k = w.shape[0]
    g = nx.DiGraph()
    for r in range(k):
        for c in range(k):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if (dr or dc) and 0 <= rr < k and 0 <= cc < k:
                        g.add_edge((r, c), (rr, cc), weight=float(w[rr, cc]))
    return float(w[0, 0]) + nx.dijkstra_path_length(g, (0, 0), (k - 1, k - 1))


def _connected(path: np.ndarray) -> bool:
    """Whether the tiles of ``path`` 8-connect the two corners."""
    k = path.shape[0]
    seen, todo = {(0, 0)}, [(0, 0)]
    while todo:
        r, c = todo.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                n = (r + dr, c + dc)
                if 0 <= n[0] < k and 0 <= n[1] < k and path[n] and n not in seen:
                    seen.add(n)
                    todo.append(n)
    return (k - 1, k - 1) in seen


def test_layout_and_dtypes(data_root):
    root = data_root / DATASET_DIR
    meta = json.loads((root / gen.MARKER).read_text())
    assert meta["label"] == "generated stand-in" and set(meta["sizes"]) == {"12x12", "18x18"}
    for k in (12, 18):
        folder = root / f"{k}x{k}"
        for split, n in zip(("train", "val", "test"), COUNTS.values(), strict=True):
            for field in ("maps", "vertex_weights", "shortest_paths"):
                if split == "train" and k == 18:
                    assert not (folder / f"train_{field}.npy").exists()
                    halves = [np.load(folder / f"train_{field}_part{i}.npy") for i in (0, 1)]
                    a = np.concatenate(halves)
                else:
                    a = np.load(folder / f"{split}_{field}.npy")
                assert a.shape[0] == n
                if field == "maps":
                    assert a.shape[1:] == (8 * k, 8 * k, 3) and a.dtype == np.uint8
                else:
                    assert a.shape[1:] == (k, k)
    assert gen.is_generated(root / "12x12")


def test_load_and_part_join(data_root, monkeypatch):
    data = load_warcraft(data_root, 18)
    folder = data_root / DATASET_DIR / "18x18"
    assert data.folder == folder
    assert data.train.maps.shape == (12, 144, 144, 3) and data.train.maps.dtype == np.uint8
    assert data.train.weights.dtype == np.float32 and data.train.paths.dtype == np.float32
    parts = [np.load(folder / f"train_maps_part{i}.npy") for i in (0, 1)]
    assert parts[0].shape[0] == 6  # the join is not trivial
    np.testing.assert_array_equal(data.train.maps, np.concatenate(parts))
    w_parts = [np.load(folder / f"train_vertex_weights_part{i}.npy") for i in (0, 1)]
    np.testing.assert_array_equal(data.train.weights, np.concatenate(w_parts))
    # a limit that cuts into the second half
    limited = load_split(folder, "train", 18, limit=8)
    np.testing.assert_array_equal(limited.paths, data.train.paths[:8])
    # the environment variable, and the data set folder itself as the path
    monkeypatch.setenv(ENV_VAR, str(data_root))
    assert load_warcraft(k=12).val.n == 6
    assert resolve_root(data_root / DATASET_DIR) == data_root / DATASET_DIR
    assert load_warcraft(data_root / DATASET_DIR, 12, max_test=2).test.n == 2


def test_labels_are_optimal_paths(data_root):
    data = load_warcraft(data_root, 12)
    assert set(np.unique(data.test.weights)) <= set(gen.COSTS.tolist())
    for split in (data.train, data.test):
        for w, p in zip(split.weights, split.paths, strict=True):
            assert p[0, 0] == 1 and p[-1, -1] == 1 and _connected(p)
            np.testing.assert_allclose(np.sum(w * p), _nx_cost(w), rtol=1e-6)


def test_solver_against_networkx_on_random_costs():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 5.0, (6, 7, 7)).astype(np.float32)
    paths, costs = gen.shortest_paths(w)
    for wi, pi, ci in zip(w, paths, costs, strict=True):
        want = _nx_cost(wi)
        np.testing.assert_allclose(ci, want, rtol=1e-9)
        np.testing.assert_allclose(np.sum(wi.astype(np.float64) * pi), want, rtol=1e-9)
        assert _connected(pi)
    with pytest.raises(ValueError, match="positive"):
        gen.shortest_paths(np.zeros((1, 3, 3), np.float32))


def test_generation_is_deterministic(tmp_path):
    a = gen.generate(tmp_path / "a", sizes=(12,), n_train=3, n_val=2, n_test=2, seed=5)
    b = gen.generate(tmp_path / "b", sizes=(12,), n_train=3, n_val=2, n_test=2, seed=5)
    c = gen.generate(tmp_path / "c", sizes=(12,), n_train=3, n_val=2, n_test=2, seed=6)
    for name in ("train_maps.npy", "test_vertex_weights.npy", "val_shortest_paths.npy"):
        x, y, z = (np.load(r / "12x12" / name) for r in (a, b, c))
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    train = np.load(a / "12x12" / "train_maps.npy")
    test = np.load(a / "12x12" / "test_maps.npy")
    assert not np.array_equal(train[:2], test[:2])  # the splits differ


def test_textures_need_more_than_one_pixel(data_root):
    """The colour ranges of the classes overlap: a per-tile mean colour does not fix the class."""
    data = load_warcraft(data_root, 12)
    tiles = data.train.maps.reshape(-1, 12, 8, 12, 8, 3).transpose(0, 1, 3, 2, 4, 5)
    mean = tiles.reshape(-1, 64, 3).mean(1)
    cls = np.searchsorted(gen.COSTS, data.train.weights.reshape(-1))
    lo = np.array([mean[cls == c].min(0) for c in range(5)])
    hi = np.array([mean[cls == c].max(0) for c in range(5)])
    # grass and forest, sand and rock overlap in every channel
    for a, b in ((0, 2), (1, 3)):
        assert np.all(np.maximum(lo[a], lo[b]) < np.minimum(hi[a], hi[b]))


def test_channel_stats(data_root):
    maps = load_warcraft(data_root, 12).train.maps
    mean, std = channel_stats(maps, chunk=5)
    x = maps.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-4)


def _copy_size(src, dst, k):
    dst.mkdir(parents=True)
    for f in (src / DATASET_DIR / f"{k}x{k}").iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_errors(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_warcraft(None, 12)
    with pytest.raises(FileNotFoundError, match=r"24x24.*train,val,test"):
        load_warcraft(data_root, 24)
    with pytest.raises(ValueError, match="k must be an integer"):
        load_warcraft(data_root, 1)
    with pytest.raises(ValueError, match="split must be"):
        load_split(data_root, "dev", 12)

    folder = _copy_size(data_root, tmp_path / "a" / "12x12", 12)
    (folder / "val_vertex_weights.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"val_vertex_weights\.npy.*\(N, 12, 12\)"):
        load_warcraft(tmp_path / "a", 12)

    folder = _copy_size(data_root, tmp_path / "b" / "18x18", 18)
    (folder / "train_maps_part1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_maps_part1\.npy is missing.*halves"):
        load_warcraft(tmp_path / "b", 18)
    (folder / "train_maps_part0.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_maps\.npy, or its halves.*part0"):
        load_warcraft(tmp_path / "b", 18)

    folder = _copy_size(data_root, tmp_path / "c" / "12x12", 12)
    np.save(folder / "test_maps.npy", np.zeros((5, 96, 90, 3), np.uint8))
    with pytest.raises(ValueError, match=r"test_maps\.npy: shape \(5, 96, 90, 3\), expected"):
        load_warcraft(tmp_path / "c", 12)
    np.save(folder / "test_maps.npy", np.zeros((4, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match=r"disagree on the number of maps.*test_maps: 4"):
        load_warcraft(tmp_path / "c", 12)
    np.save(folder / "test_maps.npy", np.full((5, 96, 96, 3), 300.0))
    with pytest.raises(ValueError, match="0..255"):
        load_warcraft(tmp_path / "c", 12)
    np.save(folder / "test_maps.npy", np.zeros((5, 96, 96, 3), np.float64))
    assert load_warcraft(tmp_path / "c", 12).test.maps.dtype == np.uint8  # cast explicitly
    paths = np.load(folder / "test_shortest_paths.npy").astype(np.float32)
    paths[0, 0, 0] = 0.5
    np.save(folder / "test_shortest_paths.npy", paths)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        load_warcraft(tmp_path / "c", 12)
    paths[0, 0, 0] = 0.0
    np.save(folder / "test_shortest_paths.npy", paths)
    with pytest.raises(ValueError, match="end tile off the path"):
        load_warcraft(tmp_path / "c", 12)
    (folder / "test_shortest_paths.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match=r"test_shortest_paths\.npy: not a readable"):
        load_warcraft(tmp_path / "c", 12)
    np.save(folder / "val_vertex_weights.npy", -np.ones((6, 12, 12), np.float32))
    with pytest.raises(ValueError, match="negative costs"):
        load_split(folder, "val", 12)
