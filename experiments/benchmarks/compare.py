"""imlejax against the same top-k I-MLE gradient written directly with PyTorch ops, in one process.

Problem (the defaults): a batch of B instances, m = 400 items, top-k oracle with k = 10, S = 10
samples per instance, ``pid(10.0)`` target, loss ``sum(w * z)`` with a fixed ``w`` of shape
(B, S, m). One gradient step is: draw the (B, S, m) noise, solve ``theta + eps`` forward, solve
``theta - lam * g + eps`` backward with the same noise, ``grad = sum_s (z_s - z'_s) / lam``.

* imlejax: ``jax.vmap(ij.imle(ij.top_k(k), noise=..., target=ij.pid(lam), samples=S))`` over the
  batch with one key per instance, gradient of the loss, jitted.
* PyTorch: a ``torch.autograd.Function`` in the manner of the torch-imle library: the forward
  pass draws the noise and keeps it, ``torch.topk`` plus a scatter of ones gives the indicator,
  the backward pass solves the target ``theta - lam * g`` perturbed by the same noise, and the
  per-sample differences are combined over the samples. (torch-imle returns the mean over the
  samples and receives one upstream gradient for it; here the output keeps the sample axis, as
  imlejax's does, so that both compute the same gradient. The work is the same.) Gumbel noise
  from ``torch.distributions.Gumbel`` or from ``-log(-log U)`` written out with in-place ops
  (whichever draws faster is used in the gradient); Sum-of-Gamma noise as torch-imle draws it,
  ``sum_j Gamma(1/k, rate=j/k)`` from ``torch.distributions.Gamma`` (scale ``k/j``).

Checks before timing: with the noise off, and with imlejax's noise fed to the PyTorch function,
both give the same gradient; the two sides' noise agrees in distribution (two-sample KS test).

Timing: everything is compiled or warmed up first (compile times are reported apart). In each of
``--repeats`` rounds every function runs once in turn, the PyTorch ones at 1 and at 2 threads;
ratios are taken within a round and reported as median and quartiles over the rounds.

    python -m experiments.benchmarks.compare [--batch 100 1000 --repeats 20 --json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import imlejax as ij

try:
    import torch
except ImportError:  # the `compare` extra is not installed
    torch = None


# ----------------------------------------------------------------------------------------------
# imlejax side


def imlejax_sampler(k, noise_name, samples, lam):
    """The transform under test (the one place that builds it)."""
    noise = None if noise_name == "none" else imlejax_noise(noise_name, k)
    return ij.imle(ij.top_k(k), noise=noise, target=ij.pid(lam), samples=samples)


def imlejax_noise(noise_name, k):
    return ij.sog(k) if noise_name == "sog" else ij.gumbel()


def imlejax_function(name, batch, m, k, samples, lam, noise_name):
    """One imlejax function of the problem: ``gradient(keys, theta, w)``, ``noise(keys)`` (the
    (B, S, m) draw) or ``topk(x)`` (B * S oracle calls on x of shape (B, S, m))."""
    if name == "gradient":
        sampler = imlejax_sampler(k, noise_name, samples, lam)
        return lambda keys, theta, w: jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w))(
            theta
        )
    if name == "noise":
        noise = imlejax_noise(noise_name, k)
        return lambda keys: jax.vmap(lambda kk: noise.sample(kk, (samples, m)))(keys)
    return jax.vmap(jax.vmap(ij.top_k(k)))


@functools.cache
def compiled(name, batch, m, k, samples, lam, noise_name="gumbel"):
    """``(compiled function, compile seconds)``, compiled ahead of time once per configuration."""
    theta, w, keys = problem(batch, m, samples)
    args = {
        "gradient": (keys, theta, w),
        "noise": (keys,),
        "topk": (jax.ShapeDtypeStruct((batch, samples, m), theta.dtype),),
    }[name]
    fn = imlejax_function(name, batch, m, k, samples, lam, noise_name)
    start = time.perf_counter()
    out = jax.jit(fn).lower(*args).compile()
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# PyTorch side


def torch_indicator(x, k):
    """The top-k oracle: ones at the ``k`` largest entries of each row."""
    idx = torch.topk(x, k, dim=-1, sorted=False).indices
    return torch.zeros_like(x).scatter_(-1, idx, 1.0)


def torch_gumbel_distribution(shape):
    return torch.distributions.Gumbel(0.0, 1.0).sample(shape)


def torch_gumbel_inplace(shape):
    # -log(-log U) with U in (0, 1): uniform_ can return 0, which is moved to the smallest
    # positive float (as torch.distributions.Gumbel does by its Uniform(tiny, 1 - eps)).
    u = torch.rand(shape).clamp_(min=torch.finfo(torch.float32).tiny)
    return u.log_().neg_().log_().neg_()


def torch_sog(shape, k, terms=10):
    """Sum-of-Gamma noise as torch-imle draws it: ``(sum_j Gamma(1/k, rate=j/k) - log s) / k``."""
    total = torch.zeros(shape)
    for j in range(1, terms + 1):
        total += torch.distributions.Gamma(torch.tensor(1.0 / k), torch.tensor(j / k)).sample(shape)
    return (total - math.log(terms)) / k


def torch_imle_function(k, lam):
    """The I-MLE top-k layer as a ``torch.autograd.Function``: ``apply(theta, draw) -> z``."""

    class TopKIMLE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, theta, draw):
            # theta (B, m); the noise (B, S, m) is drawn here and kept for the backward pass
            eps = draw()
            z = torch_indicator(theta.unsqueeze(1) + eps, k)
            ctx.save_for_backward(theta, eps, z)
            return z

        @staticmethod
        def backward(ctx, g):
            theta, eps, z = ctx.saved_tensors
            z_target = torch_indicator(theta.unsqueeze(1) - lam * g + eps, k)
            return (z - z_target).sum(dim=1) / lam, None

    return TopKIMLE


def torch_gradient(fn, theta, w, draw):
    """One gradient step: noise, forward, loss ``sum(w * z)``, backward."""
    theta = theta.detach().requires_grad_(True)
    (fn.apply(theta, draw) * w).sum().backward()
    return theta.grad


# ----------------------------------------------------------------------------------------------
# Checks


def check_equal(batch, m, k, samples, lam, noises=("gumbel", "sog"), seed=0):
    """With the noise off, and with imlejax's noise fed to PyTorch, the gradients agree.

    Returns the largest absolute difference of each check (entries are multiples of 1/lam).
    """
    theta, w, keys = problem(batch, m, samples, seed)
    fn = torch_imle_function(k, lam)
    shape = (batch, samples, m)
    out = {}
    for noise_name in ("none", *noises):
        grad = compiled("gradient", batch, m, k, samples, lam, noise_name)[0](keys, theta, w)
        if noise_name == "none":
            eps = np.zeros(shape, np.float32)
        else:
            eps = np.array(compiled("noise", batch, m, k, samples, lam, noise_name)[0](keys))
        ref = torch_gradient(
            fn,
            torch.from_numpy(np.array(theta)),
            torch.from_numpy(np.array(w)),
            lambda eps=eps: torch.from_numpy(eps),
        )
        diff = float(np.max(np.abs(np.asarray(grad) - ref.numpy())))
        if diff > 1e-6:
            raise AssertionError(f"noise={noise_name}: gradients differ by up to {diff}")
        out[noise_name] = diff
    return out


def check_noise_distribution(batch, m, k, samples, lam, noises, n=20_000):
    """Two-sample KS p-values of PyTorch's noise against imlejax's, both of shape (B, S, m)
    (the first ``n`` entries of each, i.i.d. within a draw; fixed seeds)."""
    torch.manual_seed(0)
    _, _, keys = problem(batch, m, samples)
    shape = (batch, samples, m)
    torch_draws = {
        "gumbel": torch_gumbel_inplace,
        "gumbel (torch.distributions)": torch_gumbel_distribution,
        "sog": lambda shape: torch_sog(shape, k),
    }
    pvalues = {}
    for name, draw in torch_draws.items():
        noise_name = name.split()[0]
        if noise_name not in noises:
            continue
        ours = np.asarray(compiled("noise", batch, m, k, samples, lam, noise_name)[0](keys))
        theirs = draw(shape).numpy()
        pvalues[name] = float(stats.ks_2samp(theirs.ravel()[:n], ours.ravel()[:n]).pvalue)
        if pvalues[name] < 1e-3:
            raise AssertionError(
                f"{name}: the two sides' noise differ (KS p = {pvalues[name]:.2e})"
            )
    return pvalues


# ----------------------------------------------------------------------------------------------
# Timing


def problem(batch, m, samples, seed=0):
    key = jax.random.key(seed)
    theta = jax.random.normal(key, (batch, m))
    w = jax.random.normal(jax.random.key(seed + 1), (batch, samples, m))
    keys = jax.random.split(jax.random.key(seed + 2), batch)
    return theta, w, keys


def build(batches, m, k, samples, lam, noises):
    """``{name: (kind, fn, compile seconds)}``: every timed function, compiled and run once.

    ``kind`` is ``"jax"`` or ``"torch"``; the torch functions are timed at every thread count.
    Names read ``side/B/what``, e.g. ``jax/1000/gumbel/gradient``.
    """
    torch.manual_seed(0)
    fns = {}

    def add_jax(name, what, batch, noise_name, args):
        fn, seconds = compiled(what, batch, m, k, samples, lam, noise_name)
        fns[name] = ("jax", lambda: jax.block_until_ready(fn(*args)), seconds)

    for batch in batches:
        theta, w, keys = problem(batch, m, samples)
        theta_t, w_t = torch.from_numpy(np.array(theta)), torch.from_numpy(np.array(w))
        shape = (batch, samples, m)
        torch_draws = {
            "gumbel": lambda shape=shape: torch_gumbel_inplace(shape),
            "sog": lambda shape=shape: torch_sog(shape, k),
        }
        for noise_name in noises:
            add_jax(
                f"jax/{batch}/{noise_name}/gradient",
                "gradient",
                batch,
                noise_name,
                (keys, theta, w),
            )
            add_jax(f"jax/{batch}/{noise_name}/noise", "noise", batch, noise_name, (keys,))
            fn, draw = torch_imle_function(k, lam), torch_draws[noise_name]
            fns[f"torch/{batch}/{noise_name}/gradient"] = (
                "torch",
                lambda fn=fn, draw=draw, t=theta_t, w=w_t: torch_gradient(fn, t, w, draw),
                0.0,
            )
            fns[f"torch/{batch}/{noise_name}/noise"] = ("torch", draw, 0.0)
        if "gumbel" in noises:
            fns[f"torch/{batch}/gumbel_distribution/noise"] = (
                "torch",
                lambda shape=shape: torch_gumbel_distribution(shape),
                0.0,
            )
        # one top-k call on each side: B * S rows, the Gumbel-perturbed forward inputs
        eps = compiled("noise", batch, m, k, samples, lam, "gumbel")[0](keys)
        perturbed = theta[:, None, :] + eps
        add_jax(f"jax/{batch}/topk", "topk", batch, "gumbel", (perturbed,))
        x_t = torch.from_numpy(np.array(perturbed))
        fns[f"torch/{batch}/topk"] = ("torch", lambda x=x_t: torch_indicator(x, k), 0.0)
    for _, fn, _ in fns.values():
        fn()  # warm-up
    return fns


def time_rounds(fns, repeats, threads, slow=()):
    """``[{name@threads: seconds}]``: every function once per round, the torch ones at each
    thread count (all of them at one count, then all at the next, after an untimed warm-up op).
    Names containing a string of ``slow`` run in every 4th round only."""
    rounds = []
    for r in range(repeats):
        times = {}
        for n in (None, *threads):
            if n is not None:
                torch.set_num_threads(n)
                torch.rand(1 << 16).exp_().sum()  # wakes the thread pool at this size
            for name, (kind, fn, _) in fns.items():
                if (kind == "jax") != (n is None) or (r % 4 and any(s in name for s in slow)):
                    continue
                start = time.perf_counter()
                fn()
                times[name if n is None else f"{name}@{n}"] = time.perf_counter() - start
        rounds.append(times)
    return rounds


def quantiles(values):
    return tuple(float(q) for q in np.percentile(values, [50, 25, 75]))


def summarise(rounds, batches, noises, threads):
    """Run-time medians and the torch / imlejax ratios (median and quartiles over rounds)."""
    names = sorted({n for t in rounds for n in t})
    times = {n: quantiles([t[n] for t in rounds if n in t]) for n in names}
    ratios = {}
    for batch in batches:
        rows = [(f"{noise} gradient", f"{noise}/gradient", f"{noise}/gradient") for noise in noises]
        rows += [(f"{noise} noise draw", f"{noise}/noise", f"{noise}/noise") for noise in noises]
        if "gumbel" in noises:
            rows.append(
                (
                    "gumbel noise draw (torch.distributions)",
                    "gumbel_distribution/noise",
                    "gumbel/noise",
                )
            )
        rows.append(("one top-k call (B * S rows)", "topk", "topk"))
        for label, torch_name, jax_name in rows:
            for n in threads:
                tn, jn = f"torch/{batch}/{torch_name}@{n}", f"jax/{batch}/{jax_name}"
                values = [t[tn] / t[jn] for t in rounds if tn in t and jn in t]
                ratios[f"B={batch} {label}, torch {n} thread(s)"] = quantiles(values)
    return times, ratios


# ----------------------------------------------------------------------------------------------
# Command line


def print_tables(times, ratios, compile_s, batches, threads):
    print(f"\n{'function':<44}{'compile (s)':>12}{'run (ms)':>10}{'quartiles':>18}")
    for name, (med, lo, hi) in times.items():
        base = name.split("@")[0]
        c = compile_s.get(base, 0.0)
        print(f"{name:<44}{c:>12.3f}{1e3 * med:>10.2f}{f'{1e3 * lo:.2f}-{1e3 * hi:.2f}':>18}")
    columns = [(b, n) for b in batches for n in threads]
    labels = list(dict.fromkeys(key.split(" ", 1)[1].rsplit(", torch", 1)[0] for key in ratios))
    header = "".join(f"{f'B={b}, {n} thread(s)':>22}" for b, n in columns)
    print(f"\ntorch / imlejax, median [quartiles]\n{'':<42}{header}")
    for label in labels:
        cells = []
        for b, n in columns:
            med, lo, hi = ratios[f"B={b} {label}, torch {n} thread(s)"]
            cells.append(f"{f'{med:.2f} [{lo:.2f}-{hi:.2f}]':>22}")
        print(f"{label:<42}{''.join(cells)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--lam", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--noise", nargs="+", choices=["gumbel", "sog"], default=["gumbel", "sog"])
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("PyTorch is not installed: pip install -e '.[compare]'")

    load_before = os.getloadavg()
    print(
        f"imlejax {ij.__version__} (jax {jax.__version__}, {jax.devices()[0].platform}) against "
        f"PyTorch {torch.__version__} on {platform.machine()}, {os.cpu_count()} CPU(s); load "
        f"average {load_before[0]:.2f}\ntop-k k={args.k}, m={args.m}, S={args.samples}, "
        f"lam={args.lam}, batches {args.batch}, torch threads {args.threads}"
    )
    check_batch = min(min(args.batch), 100)
    diffs = check_equal(check_batch, args.m, args.k, args.samples, args.lam, args.noise)
    print(f"gradients equal (B={check_batch}, largest difference): {diffs}")
    pvalues = check_noise_distribution(
        check_batch, args.m, args.k, args.samples, args.lam, args.noise
    )
    print(f"noise two-sample KS p-values, torch against imlejax: {pvalues}")

    fns = build(args.batch, args.m, args.k, args.samples, args.lam, args.noise)
    rounds = time_rounds(fns, args.repeats, args.threads, slow=("sog/noise",))
    load_after = os.getloadavg()
    times, ratios = summarise(rounds, args.batch, args.noise, args.threads)
    compile_s = {name: c for name, (kind, _, c) in fns.items() if kind == "jax"}
    print_tables(times, ratios, compile_s, args.batch, args.threads)
    print(f"\nload average after: {load_after[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "config": vars(args),
                    "versions": {"jax": jax.__version__, "torch": torch.__version__},
                    "load_average": {"before": load_before, "after": load_after},
                    "checks": {"max_gradient_difference": diffs, "noise_ks_pvalues": pvalues},
                    "compile_s": compile_s,
                    "run_s": {
                        name: dict(zip(("median", "q1", "q3"), v, strict=True))
                        for name, v in times.items()
                    },
                    "ratios_torch_over_imlejax": {
                        name: dict(zip(("median", "q1", "q3"), v, strict=True))
                        for name, v in ratios.items()
                    },
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
