r"""Loaders of the BeerAdvocate rationale data (Lei, Barzilay & Jaakkola 2016) in its original formats.

Files in the data folder (each may also be given gzip-compressed, with a ``.gz`` suffix):

* ``reviews.aspect{A}.train.txt`` and ``reviews.aspect{A}.heldout.txt`` for ``A`` in 0..4: one
  review per line, ``"s0 s1 s2 s3 s4\t<tokens>"``: the five aspect scores in ``[0, 1]``
  (appearance, aroma, palate, taste, overall), a tab, the space-separated tokens. The target of
  aspect ``A`` is ``s_A``.
* ``annotations.json``: JSON lines ``{"x": [tokens], "y": [5 scores], "0": [[start, end], ...],
  ..., "4": [...]}``, the keys ``"0"``..``"4"`` listing the ``[start, end)`` token spans that
  human annotators marked as talking about that aspect.
* ``review+wiki.filtered.200.txt``: word vectors, ``word v1 ... v200`` per line.

Processing, as in the reference L2X/I-MLE notebook (``L2X/L2X-experiments-neurips.ipynb`` of
tf-imle) except where noted:

* **Vocabulary** from the training tokens of the aspect, ids in order of first appearance from 3;
  ``<PAD>`` = 0, ``<START>`` = 1 (reserved, never emitted), ``<UNK>`` = 2. Held-out tokens
  missing from it become ``<UNK>``. The notebook maps unknown tokens of ``annotations.json`` to 0,
  i.e. to ``<PAD>``, so that the selector can never be credited for them; here they become
  ``<UNK>`` like held-out tokens. The notebook splits lines with ``text.split(" ")`` and keeps
  the newline on the last token (a word ``".\n"`` with no vector); here lines are stripped and
  split on runs of whitespace.
* **Padding** to ``max_len = 350`` like ``keras.preprocessing.sequence.pad_sequences`` (its
  defaults): zeros in front (``padding="pre"``) and, for longer reviews, only the *last* 350
  tokens are kept (``truncating="pre"``). Annotation spans are shifted accordingly; the notebook
  indexes the padded review with ``[-review_length:]``, which misaligns spans of reviews longer
  than 350 tokens.
* **Embeddings**: row ``i`` of the matrix is the vector of word ``i``; words without a vector
  and the three special tokens get zeros (so ``<PAD>`` embeds to the zero vector). The matrix
  has ``len(vocab)`` rows (the notebook adds one unused row).
* **Validation and test**: the held-out file is split in halves with
  ``sklearn.model_selection.train_test_split(X, y, test_size=0.5, random_state=seed)``, a new
  split per seed (``seed`` = the run's seed, the notebook's ``iterc``). That function draws
  ``permutation = numpy.random.RandomState(seed).permutation(n)`` and returns the *test* set
  ``permutation[:ceil(n / 2)]`` and the *validation* set ``permutation[ceil(n / 2):]``;
  :func:`split_heldout` computes exactly this without scikit-learn.

Every malformed line raises ``ValueError`` with ``file:line: what is wrong``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

ASPECTS = ("appearance", "aroma", "palate", "taste", "overall")
NUM_ASPECTS = len(ASPECTS)
PAD, START, UNK = 0, 1, 2
SPECIAL_TOKENS = ("<PAD>", "<START>", "<UNK>")
MAX_LEN = 350
EMBEDDING_DIM = 200
EMBEDDINGS_FILE = "review+wiki.filtered.200.txt"
ANNOTATIONS_FILE = "annotations.json"


def reviews_file(aspect: int, part: str) -> str:
    """File name of the reviews of ``aspect`` (0..4) and ``part`` (``"train"`` or ``"heldout"``)."""
    check_aspect(aspect)
    if part not in ("train", "heldout"):
        raise ValueError(f"part must be 'train' or 'heldout'; got {part!r}.")
    return f"reviews.aspect{aspect}.{part}.txt"


def check_aspect(aspect: int) -> int:
    if isinstance(aspect, bool) or not isinstance(aspect, (int, np.integer)):
        raise TypeError(f"aspect must be an int in 0..4; got {aspect!r}.")
    if not 0 <= aspect < NUM_ASPECTS:
        raise ValueError(f"aspect must be in 0..4 ({', '.join(ASPECTS)}); got {aspect}.")
    return int(aspect)


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def resolve(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else ``path + ".gz"``; ``FileNotFoundError`` naming both."""
    path = Path(path)
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gz
    raise FileNotFoundError(
        f"{path} not found (nor {gz.name}). The BeerAdvocate files cannot be downloaded here; "
        "pass --data DIR with the original files, or generate a stand-in corpus with "
        "`python -m experiments.l2x.generate --out DIR`."
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        yield from enumerate(f, start=1)


def _error(path: Path, line: int, what: str) -> ValueError:
    return ValueError(f"{path}:{line}: {what}")


def _scores(path: Path, line: int, values: Sequence, what: str) -> np.ndarray:
    if len(values) != NUM_ASPECTS:
        raise _error(path, line, f"{what} must have {NUM_ASPECTS} scores; got {len(values)}")
    out = []
    for v in values:
        try:
            if isinstance(v, bool):
                raise ValueError
            x = float(v)
        except (TypeError, ValueError):
            raise _error(path, line, f"{what}: score {v!r} is not a number") from None
        if not 0.0 <= x <= 1.0:
            raise _error(path, line, f"{what}: score {v!r} is outside [0, 1]")
        out.append(x)
    return np.asarray(out, np.float32)


@dataclasses.dataclass(frozen=True)
class Review:
    """One review: its tokens and its five aspect scores (float32, shape ``(5,)``)."""

    tokens: tuple[str, ...]
    scores: np.ndarray


@dataclasses.dataclass(frozen=True)
class Annotated(Review):
    """An annotated review: ``spans[a]`` lists the ``(start, end)`` token spans of aspect ``a``."""

    spans: tuple[tuple[tuple[int, int], ...], ...] = ()


def read_reviews(path: str | os.PathLike) -> list[Review]:
    """Reads a ``reviews.aspect{A}.{train,heldout}.txt`` file (or its ``.gz``).

    Blank lines are skipped. Raises ``ValueError`` naming the file and line for a line without a
    tab, with other than five scores, a non-numeric score, a score outside ``[0, 1]`` or no tokens.
    """
    path = resolve(path)
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        head, sep, text = line.rstrip("\r\n").partition("\t")
        if not sep:
            raise _error(path, number, 'expected "s0 s1 s2 s3 s4<TAB>tokens"; found no tab')
        scores = _scores(path, number, head.split(), "the part before the tab")
        tokens = tuple(text.split())
        if not tokens:
            raise _error(path, number, "the review has no tokens after the tab")
        out.append(Review(tokens, scores))
    if not out:
        raise ValueError(f"{path}: no reviews in the file")
    return out


def read_annotations(path: str | os.PathLike) -> list[Annotated]:
    """Reads ``annotations.json`` (JSON lines, or its ``.gz``).

    Raises ``ValueError`` naming the file and line for invalid JSON, a missing or non-list
    ``"x"``, a ``"y"`` without five scores in ``[0, 1]``, a missing aspect key ``"0"``..``"4"``,
    or a span that is not ``[start, end]`` with integers ``0 <= start < end <= len(x)``.
    """
    path = resolve(path)
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise _error(path, number, f"invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(item, dict):
            raise _error(path, number, "expected a JSON object")
        x = item.get("x")
        if not isinstance(x, list) or not x or not all(isinstance(t, str) for t in x):
            raise _error(path, number, '"x" must be a non-empty list of token strings')
        if not isinstance(item.get("y"), list):
            raise _error(path, number, '"y" must be a list of 5 scores')
        scores = _scores(path, number, item["y"], '"y"')
        spans = []
        for a in range(NUM_ASPECTS):
            key = str(a)
            if key not in item:
                raise _error(path, number, f'missing the spans of aspect "{key}"')
            if not isinstance(item[key], list):
                raise _error(path, number, f'"{key}" must be a list of [start, end] spans')
            aspect_spans = []
            for span in item[key]:
                ok = (
                    isinstance(span, list)
                    and len(span) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                )
                if not ok or not 0 <= span[0] < span[1] <= len(x):
                    raise _error(
                        path,
                        number,
                        f'"{key}": span {span!r} is not [start, end] with integers '
                        f"0 <= start < end <= {len(x)} (the number of tokens)",
                    )
                aspect_spans.append((span[0], span[1]))
            spans.append(tuple(aspect_spans))
        out.append(Annotated(tuple(x), scores, tuple(spans)))
    if not out:
        raise ValueError(f"{path}: no annotated reviews in the file")
    return out


def read_embeddings(
    path: str | os.PathLike, dim: int | None = EMBEDDING_DIM
) -> tuple[dict[str, int], np.ndarray]:
    """Reads word vectors ``word v1 ... v_dim`` (or its ``.gz``).

    A first line of exactly two integers (a word2vec-style ``count dim`` header) is skipped. With
    ``dim=None`` the dimension is that of the first vector. A repeated word keeps its first vector.

    Returns:
      ``(index, vectors)``: ``index[word]`` is the row of ``word`` in ``vectors`` (float32,
      ``(n_words, dim)``).

    Raises:
      ValueError: naming the file and line for a line with the wrong number of values or a
        non-numeric value.
    """
    path = resolve(path)
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    for number, line in _lines(path):
        fields = line.split()
        if not fields:
            continue
        if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
            continue
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise _error(path, number, "expected a word followed by its vector")
        if len(fields) != dim + 1:
            raise _error(
                path, number, f"expected a word and {dim} values; got {len(fields) - 1} values"
            )
        try:
            vec = np.asarray(fields[1:], dtype=np.float32)
        except ValueError:
            bad = next(f for f in fields[1:] if not _is_float(f))
            raise _error(
                path, number, f"value {bad!r} of word {fields[0]!r} is not a number"
            ) from None
        if not np.all(np.isfinite(vec)):
            raise _error(path, number, f"the vector of word {fields[0]!r} is not finite")
        if fields[0] not in index:
            index[fields[0]] = len(rows)
            rows.append(vec)
    if not rows:
        raise ValueError(f"{path}: no word vectors in the file")
    return index, np.stack(rows)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# Vocabulary, padding, split
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Word ids: ``<PAD>`` 0, ``<START>`` 1, ``<UNK>`` 2, then the training words from 3."""

    word_to_id: dict[str, int]

    @classmethod
    def from_reviews(cls, reviews: Sequence[Review]) -> Vocabulary:
        word_to_id = {w: i for i, w in enumerate(SPECIAL_TOKENS)}
        for review in reviews:
            for token in review.tokens:
                if token not in word_to_id:
                    word_to_id[token] = len(word_to_id)
        return cls(word_to_id)

    def __len__(self) -> int:
        return len(self.word_to_id)

    @property
    def words(self) -> list[str]:
        """Words by id."""
        return sorted(self.word_to_id, key=self.word_to_id.__getitem__)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.word_to_id.get(t, UNK) for t in tokens]

    def embedding_matrix(self, index: dict[str, int], vectors: np.ndarray) -> np.ndarray:
        """``(len(self), dim)`` float32: the vector of each word, zeros where it has none."""
        matrix = np.zeros((len(self), vectors.shape[1]), np.float32)
        for word, i in self.word_to_id.items():
            if i >= len(SPECIAL_TOKENS) and word in index:
                matrix[i] = vectors[index[word]]
        return matrix


def pad_ids(ids: Sequence[int], max_len: int = MAX_LEN) -> tuple[np.ndarray, int]:
    """Pads in front and keeps the last ``max_len`` ids (Keras ``pad_sequences`` defaults).

    Returns ``(padded, offset)``: ``padded[offset + i]`` is ``ids[i]`` for the kept tokens, so
    ``offset = max_len - len(ids)`` (negative when the review was truncated).
    """
    out = np.full((max_len,), PAD, np.int32)
    kept = list(ids)[-max_len:]
    out[max_len - len(kept) :] = kept
    return out, max_len - len(ids)


def encode_reviews(
    reviews: Sequence[Review], vocab: Vocabulary, aspect: int, max_len: int = MAX_LEN
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``(N, max_len)`` int32 and the aspect's scores ``(N,)`` float32."""
    x = np.stack([pad_ids(vocab.encode(r.tokens), max_len)[0] for r in reviews])
    y = np.asarray([r.scores[aspect] for r in reviews], np.float32)
    return x, y


def gold_mask(review: Annotated, aspect: int, max_len: int = MAX_LEN) -> np.ndarray:
    """Boolean ``(max_len,)``: positions of the padded review inside the aspect's gold spans."""
    offset = max_len - len(review.tokens)
    mask = np.zeros((max_len,), bool)
    for start, end in review.spans[aspect]:
        lo, hi = max(start + offset, 0), min(end + offset, max_len)
        if lo < hi:
            mask[lo:hi] = True
    return mask


def split_heldout(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test indices of a held-out set of ``n`` reviews for ``seed``.

    Exactly ``X_val, X_test = sklearn.model_selection.train_test_split(X, test_size=0.5,
    random_state=seed)``: ``perm = RandomState(seed).permutation(n)``, test ``perm[:ceil(n/2)]``,
    validation ``perm[ceil(n/2):]``.
    """
    if n < 2:
        raise ValueError(f"the held-out set needs at least 2 reviews to split; got {n}.")
    perm = np.random.RandomState(seed).permutation(n)
    n_test = math.ceil(0.5 * n)
    return perm[n_test:], perm[:n_test]


# ------------------------------------------------------------------------------------------------
# The data set of one aspect
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BeerData:
    """Arrays of one aspect: ids ``x_*`` ``(N, max_len)`` int32, targets ``y_*`` ``(N,)`` float32.

    ``x_ann``, ``y_ann`` and ``gold`` (``(N_ann, max_len)`` bool) are the annotated reviews and
    their gold positions for the aspect; ``embeddings`` is ``(len(vocab), dim)`` float32.
    """

    aspect: int
    vocab: Vocabulary
    embeddings: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_ann: np.ndarray
    y_ann: np.ndarray
    gold: np.ndarray
    annotated: tuple[Annotated, ...]
    max_len: int = MAX_LEN

    def summary(self) -> dict:
        return {
            "aspect": self.aspect,
            "aspect_name": ASPECTS[self.aspect],
            "vocab": len(self.vocab),
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "annotated": len(self.y_ann),
            "max_len": self.max_len,
            "embedding_dim": int(self.embeddings.shape[1]),
        }


def load_beer(
    data_dir: str | os.PathLike,
    aspect: int,
    *,
    seed: int = 0,
    max_len: int = MAX_LEN,
    embedding_dim: int | None = EMBEDDING_DIM,
    max_train: int | None = None,
) -> BeerData:
    """Loads aspect ``aspect`` from ``data_dir`` and splits the held-out file for ``seed``.

    Args:
      data_dir: folder with the original files (or their ``.gz``).
      aspect: 0 appearance, 1 aroma, 2 palate, 3 taste, 4 overall.
      seed: seed of the validation/test split (see :func:`split_heldout`).
      max_len: padded length.
      embedding_dim: expected vector size (``None``: that of the file).
      max_train: keep only the first ``max_train`` training reviews (vocabulary included).
    """
    aspect = check_aspect(aspect)
    data_dir = Path(data_dir)
    train = read_reviews(data_dir / reviews_file(aspect, "train"))[:max_train]
    heldout = read_reviews(data_dir / reviews_file(aspect, "heldout"))
    annotated = read_annotations(data_dir / ANNOTATIONS_FILE)
    index, vectors = read_embeddings(data_dir / EMBEDDINGS_FILE, embedding_dim)
    vocab = Vocabulary.from_reviews(train)
    x_train, y_train = encode_reviews(train, vocab, aspect, max_len)
    x_held, y_held = encode_reviews(heldout, vocab, aspect, max_len)
    val, test = split_heldout(len(heldout), seed)
    x_ann, y_ann = encode_reviews(annotated, vocab, aspect, max_len)
    gold = np.stack([gold_mask(r, aspect, max_len) for r in annotated])
    return BeerData(
        aspect=aspect,
        vocab=vocab,
        embeddings=vocab.embedding_matrix(index, vectors),
        x_train=x_train,
        y_train=y_train,
        x_val=x_held[val],
        y_val=y_held[val],
        x_test=x_held[test],
        y_test=y_held[test],
        x_ann=x_ann,
        y_ann=y_ann,
        gold=gold,
        annotated=tuple(annotated),
        max_len=max_len,
    )
