"""The figures and numbers of the Concepts page (``docs/concepts.md``).

    python docs/tutorials/concepts_figures.py                   # 200000 samples per histogram
    python docs/tutorials/concepts_figures.py --samples 20000   # quicker

Fixed keys; every number printed here is shown on the page. Writes ``concepts_argmax.png``,
``concepts_ksubset.png``, ``concepts_sog_sum.png`` and ``concepts_lambda.png`` to
``docs/figures/`` (or to ``$IMLEJAX_CONCEPTS_FIGURES``).

1. Argmax: frequencies of ``argmax(theta + eps)`` with Gumbel noise against ``softmax(theta)``
   (exact, the Gumbel-max trick), and with normal noise (not exact).
2. k-subsets: frequencies of ``top_k(theta + eps)`` over the 20 states of a 3-subset of 6 items
   with Sum-of-Gamma and Gumbel noise, against the exact k-subset distribution
   (``imlejax.ksubset``) and against its exact sampler.
3. The sum of k Sum-of-Gamma perturbations against the Gumbel density (Theorem 1) and its mean
   bias against the bounds of Theorem 2.
4. The I-MLE estimate as a finite difference: its bias and variance against lambda.
"""

import argparse
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij

FIGURES = pathlib.Path(
    os.environ.get(
        "IMLEJAX_CONCEPTS_FIGURES", pathlib.Path(__file__).resolve().parents[1] / "figures"
    )
)


def frequencies(z, states):
    """Empirical frequency of each state (rows of ``states``) among the samples ``z``."""
    weights = 2.0 ** np.arange(states.shape[1])
    codes = {int(c): i for i, c in enumerate(np.asarray(states) @ weights)}
    index = np.array([codes[int(c)] for c in np.asarray(z) @ weights])
    return np.bincount(index, minlength=states.shape[0]) / z.shape[0]


def tv(p, q):
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    n = parser.parse_args(argv).samples
    print(f"samples per histogram: {n}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(2026)
    k_arg, k_sub, k_sum, k_lam = jax.random.split(key, 4)

    # 1. argmax ---------------------------------------------------------------------------
    theta = jnp.array([1.0, 0.5, 0.0, -0.5, 0.8, -1.0])
    exact = np.asarray(jax.nn.softmax(theta))
    eye = np.eye(theta.shape[0])
    freq = {}
    for name, noise in (("Gumbel(0, 1)", ij.gumbel(1.0)), ("Normal(0, 1)", ij.normal(1.0))):
        z = ij.imle(ij.argmax(), noise=noise, samples=n)(k_arg, theta)
        freq[name] = frequencies(z, eye)
    se = np.sqrt(exact * (1 - exact) / n)
    z_gumbel = np.abs(freq["Gumbel(0, 1)"] - exact) / se
    print("argmax, theta =", np.asarray(theta, np.float64).round(3).tolist())
    print("  exact softmax(theta)   ", np.round(exact.astype(np.float64), 4).tolist())
    for name, f in freq.items():
        print(
            f"  {name:<22} ", np.round(f.astype(np.float64), 4).tolist(), f" TV {tv(f, exact):.4f}"
        )
    print(f"  Gumbel: max |freq - p| / stderr = {z_gumbel.max():.2f}")
    assert z_gumbel.max() < 4.5  # exact (false-failure rate below 6 * 7e-6)
    assert tv(freq["Normal(0, 1)"], exact) > 5 * tv(freq["Gumbel(0, 1)"], exact)

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    x = np.arange(theta.shape[0])
    ax.bar(x - 0.27, exact, 0.27, label=r"exact $\mathrm{softmax}(\theta/\tau)$", color="gray")
    ax.bar(x, freq["Gumbel(0, 1)"], 0.27, label="argmax(θ + ε), Gumbel ε", color="C0")
    ax.bar(x + 0.27, freq["Normal(0, 1)"], 0.27, label="argmax(θ + ε), normal ε", color="C3")
    ax.set_xticks(x, [f"{i}\nθ={t:+.1f}" for i, t in enumerate(np.asarray(theta))])
    ax.set_ylabel("probability / frequency")
    ax.set_title(f"Argmax: Gumbel perturbations are exact ({n} samples each)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "concepts_argmax.png", dpi=110)
    plt.close(fig)

    # 2. k-subsets ------------------------------------------------------------------------
    m, k = 6, 3
    theta = jnp.array([1.5, 1.0, 0.5, 0.0, -0.5, -1.0])
    states = ij.ksubset.enumerate_states(m, k)
    exact = np.asarray(jnp.exp(jax.vmap(lambda s: ij.ksubset.log_prob(s, theta, k))(states)))
    keys = jax.random.split(k_sub, 3)
    draws = {
        "exact sampler (ksubset.sample)": ij.ksubset.sample(keys[0], theta, k, samples=n),
        f"top_k(θ + ε), SoG({k}, 1, 10)": ij.imle(ij.top_k(k), noise=ij.sog(k), samples=n)(
            keys[1], theta
        ),
        "top_k(θ + ε), Gumbel(0, 1)": ij.imle(ij.top_k(k), noise=ij.gumbel(), samples=n)(
            keys[2], theta
        ),
    }
    freq = {name: frequencies(z, states) for name, z in draws.items()}
    exact_marg = np.asarray(ij.ksubset.marginals(theta, k))
    print(f"\n{k}-subsets of {m} items, theta =", np.asarray(theta, np.float64).round(3).tolist())
    print(f"  {'':<34} {'TV to exact':>11} {'max |marginal error|':>21}")
    for name, z in draws.items():
        marg = np.asarray(z).mean(axis=0)
        print(f"  {name:<34} {tv(freq[name], exact):11.4f} {np.abs(marg - exact_marg).max():21.4f}")
    order = np.argsort(-exact)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = np.arange(states.shape[0])
    ax.plot(x, exact[order], "k_", markersize=14, mew=2, label="exact p(z; θ)", zorder=3)
    for (name, f), color, dx in zip(
        freq.items(), ("gray", "C0", "C3"), (-0.2, 0, 0.2), strict=True
    ):
        ax.bar(x + dx, f[order], 0.2, color=color, label=f"{name}, TV {tv(f, exact):.3f}")
    labels = ["".join(str(int(v)) for v in np.asarray(states[i])) for i in order]
    ax.set_xticks(x, labels, rotation=90, fontsize=7, family="monospace")
    ax.set_xlabel("state z (sorted by exact probability)")
    ax.set_ylabel("probability / frequency")
    ax.set_title(f"{k}-subsets of {m}: perturb-and-MAP is approximate ({n} samples each)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "concepts_ksubset.png", dpi=110)
    plt.close(fig)

    print(f"\n  TV to the exact k-subset distribution of {m} items, same theta, by k:")
    print(
        f"  {'k':>3} {'states':>6} {'exact sampler':>13} {'SoG(k, 1, 10)':>13} {'Gumbel(0, 1)':>12}"
    )
    for kk in range(1, m):
        states_k = ij.ksubset.enumerate_states(m, kk)
        exact_k = np.asarray(
            jnp.exp(jax.vmap(lambda s, kk=kk: ij.ksubset.log_prob(s, theta, kk))(states_k))
        )
        keys_k = jax.random.split(jax.random.fold_in(k_sub, kk), 3)
        tvs = [
            tv(frequencies(ij.ksubset.sample(keys_k[0], theta, kk, samples=n), states_k), exact_k)
        ]
        for key_k, noise in zip(keys_k[1:], (ij.sog(kk), ij.gumbel()), strict=True):
            z = ij.imle(ij.top_k(kk), noise=noise, samples=n)(key_k, theta)
            tvs.append(tv(frequencies(z, states_k), exact_k))
        print(f"  {kk:>3} {states_k.shape[0]:>6} {tvs[0]:13.4f} {tvs[1]:13.4f} {tvs[2]:12.4f}")

    # 3. the sum of k SoG perturbations ---------------------------------------------------
    print(f"\nsum of k = {k} SoG(k, tau=1, s) perturbations against Gumbel(0, 1)")
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    grid = np.linspace(-3, 7, 400)
    ax.plot(grid, np.exp(-grid - np.exp(-grid)), "k", label="Gumbel(0, 1) density")
    keys = jax.random.split(k_sum, 2)
    for key_s, s, color in zip(keys, (1, 10), ("C3", "C0"), strict=True):
        sums = np.asarray(ij.sog(k, 1.0, terms=s).sample(key_s, (n, k)).sum(axis=1))
        shift = sums.mean() - np.euler_gamma
        stderr = sums.std() / math.sqrt(n)
        print(
            f"  s = {s:2d}: mean - E[Gumbel] = {shift:+.4f} (stderr {stderr:.4f}); "
            f"Theorem 2: between {1 / (2 * (s + 1)):.4f} and {1 / (2 * s):.4f}"
        )
        assert 1 / (2 * (s + 1)) - 4.5 * stderr < shift < 1 / (2 * s) + 4.5 * stderr
        ax.hist(
            sums,
            bins=120,
            range=(-3, 7),
            density=True,
            histtype="step",
            color=color,
            label=f"sum of {k} SoG draws, s = {s}",
        )
    ax.set_xlabel("perturbation of one k-subset state")
    ax.set_title("Theorem 1: the k coordinates of a state sum to (nearly) Gumbel")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "concepts_sog_sum.png", dpi=110)
    plt.close(fig)

    # 4. lambda: the finite difference ----------------------------------------------------
    theta = jnp.array([0.8, -0.4, 0.3, 1.2, -1.0, 0.1])
    c = jnp.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0])
    exact_grad = np.asarray(jax.jvp(jax.nn.softmax, (theta,), (c,))[1])
    lams = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    rows = []
    print("\nargmax, Gumbel noise, linear loss <z, c>: the I-MLE estimate against lambda")
    print(f"  {'lambda':>7} {'rel. bias (closed form)':>24} {'rel. bias (MC)':>15} {'variance':>9}")
    for i, lam in enumerate(lams):
        closed = np.asarray((jax.nn.softmax(theta) - jax.nn.softmax(theta - lam * c)) / lam)
        est = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(lam))
        report = ij.check_gradient(
            est,
            lambda z: jnp.dot(z, c),
            theta,
            states=jnp.eye(6),
            num_keys=20_000,
            key=jax.random.fold_in(k_lam, i),
        )
        bias = np.linalg.norm(closed - exact_grad) / np.linalg.norm(exact_grad)
        rows.append((lam, bias, report.relative_bias, report.variance))
        print(f"  {lam:7.2f} {bias:24.4f} {report.relative_bias:15.4f} {report.variance:9.3f}")
    lam_, bias_, mc_bias_, var_ = map(np.array, zip(*rows, strict=True))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.loglog(lam_, bias_, "o-", label="closed form")
    ax1.loglog(lam_, mc_bias_, "x", label="check_gradient, 20000 keys")
    ax1.set_xlabel("λ")
    ax1.set_ylabel("relative bias")
    ax1.legend(fontsize=8)
    ax2.loglog(lam_, var_, "o-", color="C2")
    ax2.set_xlabel("λ")
    ax2.set_ylabel("variance per coordinate (one sample)")
    fig.suptitle("I-MLE is a finite difference: bias grows with λ, variance falls")
    fig.tight_layout()
    fig.savefig(FIGURES / "concepts_lambda.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
