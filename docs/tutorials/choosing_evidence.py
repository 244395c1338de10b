"""``ij.check_gradient`` over the estimators of the library: the evidence of ``docs/choosing.md``.

Two small problems whose exact gradient is known by enumeration:

* a 3-subset of 8 items (56 states) with the quadratic loss ``||z - b||^2`` of the paper's
  synthetic experiment, ``theta`` and ``b`` drawn from N(0, I) with a fixed key;
* an argmax over 6 items (one-hot states) with a linear loss ``<z, c>``.

For every estimator: cosine and relative bias of the mean gradient against the exact one, the
per-coordinate variance of one key's gradient, and the oracle calls per gradient. 20000 keys
per estimator (``--keys``). The reference distribution is p(z; theta) at temperature 1, the
temperature of every estimator's noise here.

    python docs/tutorials/choosing_evidence.py
"""

import argparse

import jax
import jax.numpy as jnp

import imlejax as ij


def table(title, theta, loss, rows, num_keys, **where):
    print(f"\n{title}")
    print(f"{'estimator':<36} {'oracle calls':>12} {'cosine':>7} {'rel. bias':>9} {'variance':>9}")
    results = {}
    for i, (name, est, calls) in enumerate(rows):
        r = ij.check_gradient(
            est, loss, theta, num_keys=num_keys, key=jax.random.key(100 + i), **where
        )
        results[name] = r
        print(f"{name:<36} {calls:>12} {r.cosine:7.3f} {r.relative_bias:9.3f} {r.variance:9.4f}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    num_keys = parser.parse_args(argv).keys
    print(f"keys per estimator: {num_keys}")

    # k-subset problem ----------------------------------------------------------------------
    m, k = 8, 3
    key_theta, key_b = jax.random.split(jax.random.key(0))
    theta = jax.random.normal(key_theta, (m,))
    b = jax.random.normal(key_b, (m,))

    def quadratic(z):
        return jnp.sum((z - b) ** 2)

    target = ij.aimle()
    state = target.init()
    aimle_est = ij.imle(ij.top_k(k), noise=ij.sog(k), target=target)
    rows = []
    for lam in (0.1, 1.0, 10.0):
        rows.append(
            (
                f"imle, SoG, lam={lam:g}",
                ij.imle(ij.top_k(k), noise=ij.sog(k), target=ij.pid(lam)),
                "1 + 1",
            )
        )
    for lam in (0.1, 1.0, 10.0):
        rows.append(
            (f"imle, Gumbel, lam={lam:g}", ij.imle(ij.top_k(k), target=ij.pid(lam)), "1 + 1")
        )
    rows += [
        ("imle, Gumbel, lam=1, 10 samples", ij.imle(ij.top_k(k), samples=10), "10 + 10"),
        (
            "imle, SoG, aimle (initial state)",
            lambda key, t: aimle_est(key, t, state=state),
            "1 + 1",
        ),
        ("ste, Gumbel", ij.ste(ij.top_k(k)), "1 + 0"),
        ("blackbox, lam=1 (no noise)", ij.blackbox(ij.top_k(k), lam=1.0), "1 + 1"),
        ("perturbed, Gumbel, 1 sample", ij.perturbed(ij.top_k(k)), "2 + 0"),
        ("sfe, 1 sample", ij.sfe(k, quadratic), "0 (DP)"),
        (
            "sfe, 4 samples, mean baseline",
            ij.sfe(k, quadratic, num_samples=4, baseline="mean"),
            "0 (DP)",
        ),
        ("simple", ij.simple(k), "0 (DP)"),
        ("l2x, temperature 0.5", ij.l2x(k, temperature=0.5), "0"),
        ("softsub, temperature 0.5", ij.softsub(k, temperature=0.5), "0"),
    ]
    title = f"{k}-subset of {m} items, loss ||z - b||^2 (exact gradient over the 56 states)"
    table(title, theta, quadratic, rows, num_keys, k=k)

    # argmax problem ------------------------------------------------------------------------
    theta = jnp.array([0.8, -0.4, 0.3, 1.2, -1.0, 0.1])
    c = jnp.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0])

    def linear(z):
        return jnp.dot(z, c)

    rows = [
        ("imle, Gumbel, lam=0.1", ij.imle(ij.argmax(), target=ij.pid(0.1)), "1 + 1"),
        ("imle, Gumbel, lam=1", ij.imle(ij.argmax(), target=ij.pid(1.0)), "1 + 1"),
        ("ste, Gumbel", ij.ste(ij.argmax()), "1 + 0"),
        ("perturbed, Gumbel, 1 sample", ij.perturbed(ij.argmax()), "2 + 0"),
        ("gumbel_softmax, temperature 0.5", ij.gumbel_softmax(temperature=0.5), "0"),
        ("gumbel_softmax, temperature 0.1", ij.gumbel_softmax(temperature=0.1), "0"),
        (
            "sfe (k = 1), 4 samples, mean baseline",
            ij.sfe(1, linear, num_samples=4, baseline="mean"),
            "0 (DP)",
        ),
    ]
    table("argmax over 6 items, loss <z, c>", theta, linear, rows, num_keys, states=jnp.eye(6))


if __name__ == "__main__":
    main()
