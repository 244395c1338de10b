r"""A generated stand-in for the BeerAdvocate rationale corpus, in the original file formats.

The original corpus cannot be had here, so this writes one with known gold rationales::

    python -m experiments.l2x.generate --out data/beer_standin            # default sizes
    python -m experiments.l2x.generate --out DIR --train 500 --correlation 0.8 --gzip

How a review is made (everything drawn from ``numpy.random.default_rng([seed, part])``):

* **Scores.** A latent :math:`u_a = \sqrt{\rho}\,c + \sqrt{1-\rho}\,e_a` per aspect ``a`` (``c``
  shared, ``e_a`` independent, all standard normal), so that the latents of two aspects have
  correlation :math:`\rho` (``--correlation``); the score is :math:`\Phi(u_a)` rounded to a
  multiple of 0.1, uniform on ``[0, 1]`` before rounding (the real scores are multiples of 0.1
  too).
* **Aspect sentences.** One sentence per aspect (appearance, aroma, palate, taste, overall): an
  aspect noun ("head", "nose", "mouthfeel", "finish", "drinkability", ...) and a polarity phrase
  of the aspect's grade ``min(4, round(10 s) // 2)``, graded from 0 (worst) to 4 (best), drawn
  from an aspect-specific lexicon ("murky" < "dull" < "decent" < "golden" < "gorgeous" for
  appearance) and, in some templates, a generic word shared by all aspects ("awful" < "poor" <
  "ok" < "good" < "great") and a neutral intensifier. With probability ``--phrase-noise`` the
  phrase is one grade off (reviewers are not consistent). The shared words and the correlated
  scores are what make the selection hard: the other aspects' sentences also predict the target.
* **Filler.** A few neutral sentences (serving, occasion, style), between ``--fillers MIN MAX``.
* **Order.** Aspect and filler sentences are shuffled. The ``[start, end)`` token span of each
  aspect sentence is its gold rationale, written to ``annotations.json``.
* **Embeddings.** Every word gets a random 200-d vector with i.i.d. ``N(0, 0.3^2)`` entries;
  ``--extra-words`` further words that never occur in a review are added to the file, as the real
  file holds many words the reviews do not use.

The same training and held-out reviews are written for the five aspect files
``reviews.aspect{A}.{train,heldout}.txt`` (the target changes, the reviews do not); the annotated
reviews are drawn separately. Everything is deterministic given ``--seed``. Results on these
files are results on a **generated stand-in**, not on BeerAdvocate.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np

from experiments.l2x.data import (
    ANNOTATIONS_FILE,
    EMBEDDING_DIM,
    EMBEDDINGS_FILE,
    NUM_ASPECTS,
    reviews_file,
)

# Aspect nouns and polarity phrases by grade 0 (worst) .. 4 (best).
NOUNS = (
    ("appearance", "color", "head", "lacing", "pour", "look"),
    ("aroma", "smell", "nose", "scent", "bouquet"),
    ("mouthfeel", "body", "carbonation", "texture", "palate"),
    ("taste", "flavor", "finish", "aftertaste", "sweetness"),
    ("drinkability", "overall impression", "verdict", "bottom line"),
)
PHRASES = (
    (
        ("murky", "muddy brown", "lifeless"),
        ("dull", "pale and thin", "hazy yellow"),
        ("decent", "average looking", "ordinary amber"),
        ("golden", "clear copper", "nice looking"),
        ("gorgeous", "brilliant", "stunning ruby"),
    ),
    (
        ("skunky", "rotten", "foul"),
        ("faint", "stale", "musty"),
        ("mild", "modest", "grainy"),
        ("fragrant", "floral", "fruity"),
        ("heavenly", "intoxicating", "wonderfully aromatic"),
    ),
    (
        ("watery", "prickly", "thin as water"),
        ("flabby", "sticky", "overcarbonated"),
        ("medium", "moderate", "adequate"),
        ("creamy", "smooth", "silky"),
        ("velvety", "luscious", "perfectly balanced"),
    ),
    (
        ("disgusting", "metallic", "sour and off"),
        ("bland", "harsh", "muted"),
        ("okay", "passable", "straightforward"),
        ("tasty", "rich", "delicious"),
        ("superb", "exquisite", "outstanding"),
    ),
    (
        ("a drain pour", "undrinkable", "regrettable"),
        ("disappointing", "forgettable", "a chore"),
        ("average", "not bad", "so so"),
        ("recommended", "very enjoyable", "worth a try"),
        ("world class", "a must try", "unforgettable"),
    ),
)
GENERIC = (
    ("awful", "terrible"),
    ("poor", "weak"),
    ("ok", "fair"),
    ("good", "solid"),
    ("great", "excellent"),
)
INTENSIFIERS = ("very", "really", "quite", "rather", "truly")
TEMPLATES = (
    "the {noun} is {phrase} .",
    "{noun} : {phrase} , {generic} .",
    "i found the {noun} {intensifier} {phrase} .",
    "{noun} was {generic} , {phrase} even .",
    "as for the {noun} , {intensifier} {generic} and {phrase} .",
)
FILLERS = (
    "poured from a {container} into a {glass} .",
    "had this one {place} with {people} .",
    "thanks to {people} for sharing this {container} .",
    "this is a {style} from a small brewery {place} .",
    "served {temp} , as the label suggests .",
    "picked up a {container} of it last week {place} .",
    "it is a {style} brewed with {ingredient} .",
    "the label shows a {animal} next to a {thing} .",
)
SLOTS = {
    "container": ("bottle", "can", "growler", "bomber", "twelve ounce bottle"),
    "glass": ("pint glass", "snifter", "tulip", "mug", "goblet"),
    "place": ("at the pub", "at home", "on tap downtown", "at a festival", "at a friend's place"),
    "people": ("my brother", "some friends", "a coworker", "the bartender", "my neighbour"),
    "style": ("pale ale", "stout", "porter", "pilsner", "wheat beer", "barleywine", "saison"),
    "temp": ("cold", "at cellar temperature", "slightly chilled"),
    "ingredient": ("local hops", "oats", "rye", "honey", "two kinds of malt"),
    "animal": ("bear", "fox", "goat", "owl", "horse"),
    "thing": ("mountain", "barn", "river", "castle", "lighthouse"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and knobs of the stand-in corpus (defaults: the committed stand-in runs)."""

    seed: int = 0
    train: int = 500
    heldout: int = 200
    annotated: int = 100
    correlation: float = 0.5
    phrase_noise: float = 0.1
    fillers: tuple[int, int] = (1, 4)
    dim: int = EMBEDDING_DIM
    extra_words: int = 200
    gzip: bool = False

    def __post_init__(self):
        if not 0.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1]; got {self.correlation}.")
        if not 0.0 <= self.phrase_noise <= 1.0:
            raise ValueError(f"phrase_noise must be in [0, 1]; got {self.phrase_noise}.")
        if min(self.train, self.heldout, self.annotated) < 2:
            raise ValueError("train, heldout and annotated must each be at least 2 reviews.")
        lo, hi = self.fillers
        if not 0 <= lo <= hi:
            raise ValueError(
                f"fillers must be (min, max) with 0 <= min <= max; got {self.fillers}."
            )


def grade(score: float) -> int:
    """Polarity grade 0..4 of a score in ``[0, 1]``: ``min(4, round(10 s) // 2)``."""
    return min(4, int(round(10 * score)) // 2)


def _normal_cdf(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))


def draw_scores(rng: np.random.Generator, n: int, correlation: float) -> np.ndarray:
    """``(n, 5)`` scores, multiples of 0.1, from latents with pairwise correlation ``rho``."""
    common = rng.standard_normal((n, 1))
    own = rng.standard_normal((n, NUM_ASPECTS))
    latent = math.sqrt(correlation) * common + math.sqrt(1.0 - correlation) * own
    return np.round(_normal_cdf(latent) * 10.0) / 10.0


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _fill(rng: np.random.Generator, template: str, **given: str) -> list[str]:
    slots = {name: _choice(rng, values) for name, values in SLOTS.items()}
    return template.format(**slots, **given).split()


def aspect_sentence(rng: np.random.Generator, aspect: int, score: float, noise: float) -> list[str]:
    """The tokens of one sentence about ``aspect`` with the polarity of ``score``."""
    g = grade(score)
    if rng.random() < noise:
        g = min(4, max(0, g + _choice(rng, (-1, 1))))
    return (
        _choice(rng, TEMPLATES)
        .format(
            noun=_choice(rng, NOUNS[aspect]),
            phrase=_choice(rng, PHRASES[aspect][g]),
            generic=_choice(rng, GENERIC[g]),
            intensifier=_choice(rng, INTENSIFIERS),
        )
        .split()
    )


def make_review(
    rng: np.random.Generator, scores: np.ndarray, cfg: Config
) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of one review and the ``[start, end)`` span of each aspect's sentence."""
    sentences = [
        (a, aspect_sentence(rng, a, scores[a], cfg.phrase_noise)) for a in range(NUM_ASPECTS)
    ]
    n_fill = int(rng.integers(cfg.fillers[0], cfg.fillers[1] + 1))
    sentences += [(-1, _fill(rng, _choice(rng, FILLERS))) for _ in range(n_fill)]
    order = rng.permutation(len(sentences))
    tokens: list[str] = []
    spans: list[tuple[int, int]] = [(0, 0)] * NUM_ASPECTS
    for i in order:
        a, words = sentences[i]
        if a >= 0:
            spans[a] = (len(tokens), len(tokens) + len(words))
        tokens.extend(words)
    return tokens, spans


def make_part(cfg: Config, part: int, n: int) -> list[tuple[np.ndarray, list[str], list]]:
    rng = np.random.default_rng([cfg.seed, part])
    scores = draw_scores(rng, n, cfg.correlation)
    return [(s, *make_review(rng, s, cfg)) for s in scores]


def vocabulary() -> list[str]:
    """Every word the generator can write, in a fixed order."""
    words: dict[str, None] = {}
    texts = [*TEMPLATES, *FILLERS, *INTENSIFIERS]
    texts += [p for aspect in PHRASES for g in aspect for p in g]
    texts += [n for nouns in NOUNS for n in nouns] + [w for g in GENERIC for w in g]
    texts += [v for values in SLOTS.values() for v in values]
    for text in texts:
        for w in text.split():
            if not w.startswith("{"):
                words[w] = None
    return list(words)


def _open(path: Path, gz: bool):
    if gz:
        return gzip.open(path.with_name(path.name + ".gz"), "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _score_text(scores) -> str:
    return " ".join(f"{s:.1f}" for s in scores)


def generate(out: str | Path, cfg: Config = Config()) -> dict:
    """Writes the stand-in corpus into ``out``; returns a summary (also ``standin.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"train": make_part(cfg, 0, cfg.train), "heldout": make_part(cfg, 1, cfg.heldout)}
    for name, reviews in parts.items():
        lines = "".join(f"{_score_text(s)}\t{' '.join(t)}\n" for s, t, _ in reviews)
        for aspect in range(NUM_ASPECTS):
            with _open(out / reviews_file(aspect, name), cfg.gzip) as f:
                f.write(lines)
    with _open(out / ANNOTATIONS_FILE, cfg.gzip) as f:
        for s, tokens, spans in make_part(cfg, 2, cfg.annotated):
            item = {"x": tokens, "y": [round(float(v), 1) for v in s]}
            item.update({str(a): [list(spans[a])] for a in range(NUM_ASPECTS)})
            f.write(json.dumps(item) + "\n")
    rng = np.random.default_rng([cfg.seed, 3])
    words = vocabulary() + [f"wikiword{i}" for i in range(cfg.extra_words)]
    vectors = rng.normal(0.0, 0.3, (len(words), cfg.dim))
    with _open(out / EMBEDDINGS_FILE, cfg.gzip) as f:
        for w, v in zip(words, vectors, strict=True):
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
    train_scores = np.stack([s for s, _, _ in parts["train"]])
    lengths = [len(t) for _, t, _ in parts["train"]]
    summary = {
        "generated_standin": True,
        "config": dataclasses.asdict(cfg),
        "words": len(words),
        "train_mean_tokens": float(np.mean(lengths)),
        "train_max_tokens": int(np.max(lengths)),
        "train_score_correlation": np.corrcoef(train_scores.T).round(3).tolist(),
    }
    (out / "standin.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.l2x.generate",
        description="Write a generated stand-in BeerAdvocate corpus with gold rationales.",
    )
    d = Config()
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--train", type=int, default=d.train, help="training reviews")
    parser.add_argument("--heldout", type=int, default=d.heldout, help="held-out reviews")
    parser.add_argument("--annotated", type=int, default=d.annotated, help="annotated reviews")
    parser.add_argument("--correlation", type=float, default=d.correlation)
    parser.add_argument("--phrase-noise", type=float, default=d.phrase_noise)
    parser.add_argument("--fillers", type=int, nargs=2, default=d.fillers, metavar=("MIN", "MAX"))
    parser.add_argument("--dim", type=int, default=d.dim)
    parser.add_argument("--extra-words", type=int, default=d.extra_words)
    parser.add_argument("--gzip", action="store_true", help="write .gz files")
    a = parser.parse_args(argv)
    cfg = Config(
        seed=a.seed,
        train=a.train,
        heldout=a.heldout,
        annotated=a.annotated,
        correlation=a.correlation,
        phrase_noise=a.phrase_noise,
        fillers=tuple(a.fillers),
        dim=a.dim,
        extra_words=a.extra_words,
        gzip=a.gzip,
    )
    summary = generate(a.out, cfg)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
