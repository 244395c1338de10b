"""Checking a gradient estimator with ``ij.check_gradient``.

``ij.check_gradient`` averages an estimator's gradient over many keys and compares it with the
exact gradient of the expected loss, computed by enumerating the feasible states of a small
instance. This script shows three uses:

1. I-MLE on argmax with Gumbel noise, whose expected estimate has a closed form;
2. two estimators on a 2-subset of 6 items (score function and I-MLE);
3. the sign convention of a cost (minimisation) oracle, and what forgetting it looks like.

    python docs/tutorials/check_gradient.py

Asserts that the Monte Carlo means match the closed form and the unbiased estimator within their
standard errors, that I-MLE points the right way, that a cost oracle's gradient is exactly minus
the score oracle's, and that forgetting ``minimize=True`` is caught.
"""

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij

# --8<-- [start:argmax]
theta = jnp.array([0.8, -0.4, 0.3, 1.2, -1.0, 0.1])
c = jnp.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0])


def linear_loss(z):
    return jnp.dot(z, c)


lam = 0.5
est = ij.imle(ij.argmax(), noise=ij.gumbel(1.0), target=ij.pid(lam))
report = ij.check_gradient(est, linear_loss, theta, states=jnp.eye(6), num_keys=2000)
print(report)
# --8<-- [end:argmax]

# --8<-- [start:closed_form]
# With Gumbel noise on argmax the forward samples are exact, E[MAP(theta + eps)] = softmax(theta),
# and a linear loss has the constant upstream gradient g = c. The expected I-MLE estimate is
# therefore exactly the finite difference of the marginals:
closed_form = (jax.nn.softmax(theta) - jax.nn.softmax(theta - lam * c)) / lam
z_scores = (report.mean - np.asarray(closed_form)) / report.stderr
print("closed form   ", np.round(np.asarray(closed_form), 5))
print(f"max |z| of the Monte Carlo mean against the closed form: {np.abs(z_scores).max():.2f}")
assert np.abs(z_scores).max() < 4.5  # false-failure rate below 6 * 7e-6
assert report.cosine > 0.95
# --8<-- [end:closed_form]

# --8<-- [start:ksubset]
k = 2
b = jnp.array([1.0, 0.0, 1.0, 0.0, 0.5, 0.0])


def quadratic_loss(z):
    return jnp.sum((z - b) ** 2)


estimators = {
    "sfe, 4 samples, mean baseline": ij.sfe(k, quadratic_loss, num_samples=4, baseline="mean"),
    "imle, SoG, lam=1": ij.imle(ij.top_k(k), noise=ij.sog(k), target=ij.pid(1.0)),
}
reports = {}
print(f"{'estimator':<31} {'cosine':>7} {'rel. bias':>9} {'variance':>9} {'max|z|':>7}")
for name, estimator in estimators.items():
    r = ij.check_gradient(estimator, quadratic_loss, theta, k=k, num_keys=2000)
    reports[name] = r
    print(f"{name:<31} {r.cosine:7.3f} {r.relative_bias:9.3f} {r.variance:9.4f} {r.max_z:7.2f}")
# --8<-- [end:ksubset]

# --8<-- [start:ksubset_checks]
assert reports["sfe, 4 samples, mean baseline"].max_z < 4.5  # unbiased: within standard errors
assert reports["imle, SoG, lam=1"].cosine > 0.9  # biased, but pointing the right way
# --8<-- [end:ksubset_checks]

# --8<-- [start:sign]
costs = -theta  # a cost oracle: the cheapest k items; p(z; w) ∝ exp(-<z, w>)


def cheapest_k(w):
    return ij.top_k(k)(-w)


sampler = ij.imle(cheapest_k, noise=ij.sog(k), target=ij.pid(1.0), minimize=True)
score_sampler = estimators["imle, SoG, lam=1"]  # the same estimator on the scores theta = -w
key = jax.random.key(7)
grad_w = jax.grad(lambda w: quadratic_loss(sampler(key, w)))(costs)
grad_theta = jax.grad(lambda t: quadratic_loss(score_sampler(key, t)))(theta)
print("d loss / d w     ", np.asarray(grad_w))
print("d loss / d theta ", np.asarray(grad_theta))
assert np.array_equal(grad_w, -grad_theta)  # same noise, same solves: the chain rule through -w
# check_gradient's reference is p(z; theta), so a cost estimator is checked as a function of
# theta = -w: lambda key, t: sampler(key, -t). Forgetting minimize=True (the estimator then
# maximises the costs) is caught:
wrong_sampler = ij.imle(cheapest_k, noise=ij.sog(k), target=ij.pid(1.0))
wrong = ij.check_gradient(lambda key, t: wrong_sampler(key, -t), quadratic_loss, theta, k=k)
print(f"minimize forgotten: mean gradient {np.round(wrong.mean, 4)}, cosine {wrong.cosine}")
# The target w - lam * g makes the items the loss would drop cheaper and the others dearer, so
# the cost oracle picks the same items again and the finite difference is 0 for every key:
assert np.all(wrong.mean == 0.0) and wrong.relative_bias == 1.0
# --8<-- [end:sign]
