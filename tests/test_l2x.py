"""Learning to explain: BeerAdvocate-format loaders, stand-in generator, metrics, model, CLI."""

import gzip
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from flax import nnx  # noqa: E402

from experiments.l2x import __main__ as cli  # noqa: E402
from experiments.l2x.data import (  # noqa: E402
    ANNOTATIONS_FILE,
    EMBEDDINGS_FILE,
    PAD,
    UNK,
    Annotated,
    Vocabulary,
    gold_mask,
    load_beer,
    pad_ids,
    read_annotations,
    read_embeddings,
    read_reviews,
    reviews_file,
    split_heldout,
)
from experiments.l2x.generate import NOUNS, Config, draw_scores, generate, grade  # noqa: E402
from experiments.l2x.methods import METHODS, MaskedTopK  # noqa: E402
from experiments.l2x.metrics import median_rank, ranks, subset_precision  # noqa: E402
from experiments.l2x.model import L2XModel, window  # noqa: E402
from experiments.l2x.train import TrainConfig, train  # noqa: E402

SMALL = Config(seed=1, train=30, heldout=11, annotated=6, extra_words=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("beer")
    generate(out, SMALL)
    return out


# ------------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------------


def test_load_beer_matches_the_files(corpus):
    data = load_beer(corpus, 2, seed=0)
    lines = (corpus / reviews_file(2, "train")).read_text().splitlines()
    assert len(data.y_train) == 30 and data.x_train.shape == (30, 350)
    first_scores, first_text = lines[0].split("\t")
    tokens = first_text.split()
    # ids in order of first appearance from 3, reviews padded in front
    assert data.vocab.word_to_id[tokens[0]] == 3
    assert data.vocab.word_to_id["<PAD>"] == PAD and data.vocab.word_to_id["<UNK>"] == UNK
    row = data.x_train[0]
    assert np.all(row[: 350 - len(tokens)] == PAD)
    words = data.vocab.words
    assert [words[i] for i in row[350 - len(tokens) :]] == tokens
    assert data.y_train[0] == pytest.approx(float(first_scores.split()[2]))
    # embeddings: the file's vector for a word, zeros for the special tokens
    index, vectors = read_embeddings(corpus / EMBEDDINGS_FILE)
    np.testing.assert_array_equal(data.embeddings[3], vectors[index[tokens[0]]])
    assert not data.embeddings[:3].any()
    # held-out halves: test = ceil(11 / 2) = 6, validation 5, disjoint, as train_test_split
    assert len(data.y_test) == 6 and len(data.y_val) == 5
    held = read_reviews(corpus / reviews_file(2, "heldout"))
    val, test = split_heldout(11, 0)
    assert data.y_test[0] == pytest.approx(held[test[0]].scores[2])
    # gold positions of the annotated reviews cover the aspect's sentence
    ann = read_annotations(corpus / ANNOTATIONS_FILE)
    ((start, end),) = ann[0].spans[2]
    offset = 350 - len(ann[0].tokens)
    assert np.flatnonzero(data.gold[0]).tolist() == list(range(start + offset, end + offset))
    assert any(n.split()[0] in ann[0].tokens[start:end] for n in NOUNS[2])


def test_gzip_files_load_the_same(corpus, tmp_path):
    generate(tmp_path, Config(**{**SMALL.__dict__, "gzip": True}))
    assert (tmp_path / (reviews_file(0, "train") + ".gz")).is_file()
    assert not (tmp_path / reviews_file(0, "train")).exists()
    a, b = load_beer(corpus, 0, seed=3), load_beer(tmp_path, 0, seed=3)
    for name in ("x_train", "y_train", "x_val", "x_test", "x_ann", "gold", "embeddings"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_unknown_heldout_tokens_become_unk():
    vocab = Vocabulary.from_reviews([])
    assert len(vocab) == 3 and vocab.encode(["never", "seen"]) == [UNK, UNK]


def test_split_heldout_is_sklearns_train_test_split():
    val, test = split_heldout(11, 3)
    perm = np.random.RandomState(3).permutation(11)
    assert test.tolist() == perm[:6].tolist() and val.tolist() == perm[6:].tolist()
    assert sorted([*val, *test]) == list(range(11))
    assert split_heldout(11, 4)[1].tolist() != test.tolist()  # a new split per seed


def test_split_heldout_against_sklearn():
    sklearn = pytest.importorskip("sklearn.model_selection")
    x = np.arange(23)
    x_val, x_test = sklearn.train_test_split(x, test_size=0.5, random_state=7)
    val, test = split_heldout(23, 7)
    assert x_val.tolist() == val.tolist() and x_test.tolist() == test.tolist()


def test_pad_ids_like_keras_pad_sequences():
    padded, offset = pad_ids([5, 6, 7], 5)
    assert padded.tolist() == [0, 0, 5, 6, 7] and offset == 2
    padded, offset = pad_ids(list(range(3, 10)), 4)  # keeps the last 4 tokens
    assert padded.tolist() == [6, 7, 8, 9] and offset == -3


def test_gold_mask_shifts_spans_of_truncated_reviews():
    review = Annotated(tuple("abcdef"), np.zeros(5, np.float32), (((0, 2), (4, 6)),) + ((),) * 4)
    assert gold_mask(review, 0, 4).tolist() == [False, False, True, True]
    assert gold_mask(review, 0, 8).tolist() == [False, False, True, True, False, False, True, True]
    assert not gold_mask(review, 1, 8).any()


@pytest.mark.parametrize(
    "line, message",
    [
        ("0.1 0.2 0.3 0.4 0.5 no tab here", "found no tab"),
        ("0.1 0.2 0.3 0.4\tgood beer", "must have 5 scores; got 4"),
        ("0.1 0.2 x 0.4 0.5\tgood beer", "score 'x' is not a number"),
        ("0.1 0.2 1.5 0.4 0.5\tgood beer", r"score '1.5' is outside \[0, 1\]"),
        ("0.1 0.2 0.3 0.4 0.5\t  ", "no tokens"),
    ],
)
def test_malformed_reviews(tmp_path, line, message):
    path = tmp_path / "reviews.aspect0.train.txt"
    path.write_text("0.1 0.2 0.3 0.4 0.5\tfine beer\n\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"reviews.aspect0.train.txt:3: .*{message}"):
        read_reviews(path)


def _ann(**change):
    item = {"x": ["a", "b", "c"], "y": [0.1] * 5, **{str(a): [] for a in range(5)}}
    item.update(change)
    return json.dumps({k: v for k, v in item.items() if v is not None})


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        (_ann(y=[0.1, "bad", 0.1, 0.1, 0.1]), "score 'bad' is not a number"),
        (_ann(y=[0.1] * 4), "must have 5 scores"),
        (_ann(x="abc"), '"x" must be a non-empty list'),
        (_ann(**{"4": None}), 'missing the spans of aspect "4"'),
        (_ann(**{"1": [[2, 1]]}), r'"1": span \[2, 1\] is not'),
        (_ann(**{"1": [[0, 4]]}), r"0 <= start < end <= 3"),
        (_ann(**{"2": [[0.5, 2]]}), r"span \[0.5, 2\] is not"),
        (_ann(**{"2": [[0, 1, 2]]}), r"span \[0, 1, 2\] is not"),
    ],
)
def test_malformed_annotations(tmp_path, line, message):
    path = tmp_path / "annotations.json"
    path.write_text(_ann() + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"annotations.json:2: .*{message}"):
        read_annotations(path)


def test_malformed_embeddings(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\nbeer 0.1 0.2 0.3\nhops 0.1 0.2\n")
    with pytest.raises(ValueError, match=r"vectors.txt:3: expected a word and 3 values; got 2"):
        read_embeddings(path, dim=3)
    path.write_text("beer 0.1 0.2 0.3\nhops 0.1 abc 0.3\n")
    with pytest.raises(ValueError, match=r"vectors.txt:2: value 'abc' of word 'hops'"):
        read_embeddings(path, dim=None)
    path.write_text("beer 0.1 0.2 0.3\nbeer 1 1 1\n")
    index, vectors = read_embeddings(path, dim=3)  # a repeated word keeps its first vector
    assert index == {"beer": 0}
    np.testing.assert_allclose(vectors, [[0.1, 0.2, 0.3]])
    gz = tmp_path / "more.txt.gz"
    with gzip.open(gz, "wt") as f:
        f.write("malt 1 2\n")
    assert read_embeddings(tmp_path / "more.txt", dim=2)[1].tolist() == [[1.0, 2.0]]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reviews.aspect3.train.txt not found .*\.gz"):
        load_beer(tmp_path, 3)


# ------------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------------


def test_generator_is_deterministic_and_consistent(corpus, tmp_path):
    generate(tmp_path, SMALL)
    for name in (reviews_file(4, "heldout"), ANNOTATIONS_FILE, EMBEDDINGS_FILE):
        assert (tmp_path / name).read_bytes() == (corpus / name).read_bytes()
    for review in read_annotations(corpus / ANNOTATIONS_FILE):
        for a in range(5):
            ((start, end),) = review.spans[a]
            sentence = " ".join(review.tokens[start:end])
            assert any(noun in sentence for noun in NOUNS[a]) and sentence.endswith(".")


def test_generator_scores_and_correlation():
    rng = np.random.default_rng(0)
    scores = draw_scores(rng, 4000, 0.8)
    assert set(np.round(scores.ravel() * 10).astype(int)) <= set(range(11))
    c = np.corrcoef(scores.T)
    off = c[~np.eye(5, dtype=bool)]
    assert off.min() > 0.65 and off.max() < 0.9  # latent rho = 0.8, attenuated by rounding
    c0 = np.corrcoef(draw_scores(rng, 4000, 0.0).T)[~np.eye(5, dtype=bool)]
    assert np.abs(c0).max() < 0.08  # 4000 pairs: |r| < 0.08 has a chance of ~1e-7 per pair
    assert [grade(s) for s in (0.0, 0.1, 0.2, 0.5, 0.7, 0.8, 1.0)] == [0, 0, 1, 2, 3, 4, 4]


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def test_subset_precision_hand_computed():
    x = np.array([[0, 0, 5, 6, 7, 8], [0, 9, 9, 9, 9, 9], [0, 0, 0, 0, 4, 4]])
    gold = np.array([[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]], bool)
    sel = np.array([[0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 1]])
    # review 0: one padding selected (not counted), 2 real selected, 1 in gold -> max(2, 3) = 3
    # review 1: 4 real selected, 1 in gold -> 4; review 2: 1 real selected, in gold -> 3
    assert subset_precision(sel, x, gold, 3) == pytest.approx((1 + 1 + 1) / (3 + 4 + 3))
    assert subset_precision(sel, x, gold, 1) == pytest.approx(3 / (2 + 4 + 1))


def test_ranks_and_median_rank_hand_computed():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    assert ranks(scores).tolist() == [[4, 1, 2, 3], [1, 2, 3, 4]]
    relevant = np.array([[1, 1, 0, 0], [0, 1, 1, 0]], bool)
    assert median_rank(scores, relevant).tolist() == [2.5, 2.5]
    relevant3 = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], bool)
    assert median_rank(scores, relevant3).tolist() == [2.0, 3.0]


# ------------------------------------------------------------------------------------------------
# Model and selection
# ------------------------------------------------------------------------------------------------


def _tiny_model(data, method, k=3, seed=0):
    built = METHODS[method].build(k)
    return L2XModel(
        data.embeddings, built, k=k, filters=6, hidden=5, hidden_pred=4,
        rngs=nnx.Rngs(params=seed, noise=seed + 1, dropout=seed + 2),
    )  # fmt: skip


@pytest.mark.slow
def test_window_gives_the_full_length_scores(corpus):
    data = load_beer(corpus, 0)
    w = window(data.x_train, data.x_val, data.x_test, data.x_ann)
    longest = max(
        (x != PAD).sum(1).max() for x in (data.x_train, data.x_val, data.x_test, data.x_ann)
    )
    assert w == longest + 2 and w < 350
    model = _tiny_model(data, "imle_t30")
    model.eval()
    x = jnp.asarray(data.x_train[:8])
    pred_full, z_full, theta_full = model(x)
    pred_w, z_w, theta_w = model(x[:, -w:])
    real = np.asarray(x[:, -w:] != PAD)
    np.testing.assert_allclose(
        np.asarray(theta_w)[real], np.asarray(theta_full[:, -w:])[real], 1e-5
    )
    np.testing.assert_allclose(pred_w, pred_full, rtol=1e-5)
    np.testing.assert_array_equal(z_w, z_full[:, -w:])


def test_masked_top_k_never_selects_padding():
    theta = jnp.array([[9.0, 8.0, 1.0, 2.0, 3.0], [9.0, 9.0, 9.0, 0.0, -1.0]])
    valid = jnp.array([[False, False, True, True, True], [False, False, False, True, True]])
    z = MaskedTopK(2)(theta, valid)
    assert z.tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    z3 = MaskedTopK(3)(theta, valid)  # only 2 real tokens in row 1: one padding must be taken
    assert z3[0].tolist() == [0, 0, 1, 1, 1] and z3[1, 3:].tolist() == [1, 1]


@pytest.mark.parametrize(
    "method",
    [
        m if m in ("imle_t30", "l2x", "simple") else pytest.param(m, marks=pytest.mark.slow)
        for m in METHODS
    ],
)
def test_methods_select_real_tokens_and_train_the_explainer(corpus, method):
    data = load_beer(corpus, 0)
    model = _tiny_model(data, method)
    x = jnp.asarray(data.x_train[:4, -60:])
    y = jnp.asarray(data.y_train[:4])
    _, z, _ = model(x)
    z = np.asarray(z)
    assert np.all(z[np.asarray(x) == PAD] == 0)  # every review has more than k tokens
    if method == "l2x":  # the maximum of k relaxed one-hots sums to at most k
        assert np.all(z.sum(-1) <= 3.0 + 1e-4)
    else:
        np.testing.assert_allclose(z.sum(-1), 3.0, atol=1e-4)

    def loss(m):
        return jnp.mean((m(x)[0] - y) ** 2)

    from imlejax.flax.nnx import aimle_filter

    grads = nnx.grad(loss, argnums=nnx.DiffState(0, aimle_filter))(model)
    g = grads["explainer"]["conv_out"]["kernel"][...]
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


# ------------------------------------------------------------------------------------------------
# Training, resume, CLI
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_is_exact(corpus, tmp_path):
    data = load_beer(corpus, 1, seed=0)
    cfg = TrainConfig(
        method="aimle", aspect=1, k=3, epochs=2, batch_size=10, filters=6, hidden=5,
        hidden_pred=4,
    )  # fmt: skip
    whole = train(cfg, data, tmp_path / "whole", progress=False)
    train(cfg, data, tmp_path / "split", progress=False, stop_after=1)
    split = train(cfg, data, tmp_path / "split", progress=False)
    keys = ("train_mse", "val_mse", "test_mse", "precision", "aimle_beta")
    for a, b in zip(whole["history"], split["history"], strict=True):
        assert [a[k] for k in keys] == [b[k] for k in keys]
    assert whole["best"]["epoch"] in (1, 2) and 0 <= whole["best"]["precision"] <= 1
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(method="l2x", aspect=1, k=3), data, tmp_path / "whole", progress=False)


def test_smoke_cli(tmp_path):
    results = cli.main(["--smoke", "--no-progress", "--method", "softsub", "--out", str(tmp_path)])
    (result,) = results
    assert result["generated_standin"] and result["epochs_completed"] == 2
    assert math.isfinite(result["best"]["test_mse"])
    assert (tmp_path / "taste" / "softsub_k10" / "seed0" / "metrics.csv").is_file()
    from experiments.l2x import report

    (row,) = report.main(["--runs", str(tmp_path), "--docs", str(tmp_path / "docs")])
    assert row["data"] == "generated stand-in" and row["seeds"] == [0]
    for name in ("results/l2x_summary.json", "results/l2x_runs.csv", "figures/l2x_curves.png"):
        assert (tmp_path / "docs" / name).is_file()
    page = (tmp_path / "docs" / "figures" / "l2x_rationales.html").read_text()
    assert "generated stand-in" in page and "background" in page


def test_window_of_reviews():
    x = np.zeros((3, 10), np.int32)
    x[0, 7:] = 5  # 3 tokens
    x[1, 4:] = 6  # 6 tokens; row 2 is empty
    assert window(x) == 8 and window(x, x[:1]) == 8 and window(x[2:]) == 2
    full = np.ones((1, 10), np.int32)
    assert window(full) == 10


# ------------------------------------------------------------------------------------------------
# Synthetic benchmarks of Chen et al.
# ------------------------------------------------------------------------------------------------


def test_synthetic_data_follow_the_formulas():
    from experiments.l2x import synthetic

    x, p, rel = synthetic.generate("XOR", 50, 0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(x[:, 0] * x[:, 1])), rtol=1e-5)
    assert rel.sum(1).tolist() == [2] * 50 and rel[:, :2].all()
    x, p, _ = synthetic.generate("orange_skin", 50, 1)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(np.sum(x[:, :4] ** 2, 1) - 4)), rtol=1e-4)
    x, p, _ = synthetic.generate("nonlinear_additive", 50, 2)
    x64 = x.astype(np.float64)
    a = -100 * np.sin(0.2 * x64[:, 0]) + np.abs(x64[:, 1]) + x64[:, 2] + np.exp(-x64[:, 3]) - 2.4
    np.testing.assert_allclose(p, 1 / (1 + np.exp(a)), rtol=1e-4, atol=1e-7)
    x, p, rel = synthetic.generate("switch", 400, 3)
    first = rel[:, 0]
    assert first.sum() == 200 and np.all(rel.sum(1) == 5) and rel[:, 9].all()
    assert np.all(rel[~first, 4:8]) and not rel[~first, :4].any()
    assert x[first, 9].mean() > 2 and x[~first, 9].mean() < -2  # x9 shifted by +3 / -3
    np.testing.assert_allclose(
        p[first], 1 / (1 + np.exp(np.sum(x[first, :4].astype(np.float64) ** 2, 1) - 4)), rtol=1e-4
    )
    x2 = x[~first].astype(np.float64)
    a = -100 * np.sin(0.2 * x2[:, 4]) + np.abs(x2[:, 5]) + x2[:, 6] + np.exp(-x2[:, 7]) - 2.4
    np.testing.assert_allclose(p[~first], 1 / (1 + np.exp(a)), rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_synthetic_smoke():
    from experiments.l2x import synthetic

    (row,) = synthetic.main(["--smoke", "--methods", "l2x", "--datatypes", "XOR"])
    assert row["seeds"] == 1 and 1.5 <= row["median_rank_mean"] <= 9.5
    assert 0.0 <= row["posthoc_accuracy_mean"] <= 1.0
