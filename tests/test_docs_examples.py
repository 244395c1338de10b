"""The code on the site's own pages runs as written (the tutorials have tests/test_tutorials.py).

* ``docs/index.md``: the fifteen-line example learns the planted top-3 subset it prints.
* ``docs/getting_started.md``: every block, in order, in one namespace.
* ``docs/migration.md``: every imlejax block (the torch-imle and PyEPO blocks need those
  libraries), with the arrays the page assumes (``theta``, ``y``, ``sp``, ``c_hat``, ...).

The pages are written for a reader's default configuration, so the blocks run with rank
promotion allowed (the suite raises on it, tests/conftest.py).
"""

import contextlib
import io
import re
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import imlejax as ij

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _allow_rank_promotion():
    with jax.numpy_rank_promotion("allow"):
        yield


def python_blocks(page: str) -> list[str]:
    """The fenced Python blocks of ``docs/<page>``, dedented."""
    text = (DOCS / page).read_text()
    return [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", text, re.S)]


def run(code: str, namespace: dict) -> str:
    """Executes ``code`` in ``namespace``; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs>", "exec"), namespace)
    return out.getvalue()


def test_home_page_example_learns_the_planted_subset():
    (block,) = python_blocks("index.md")
    namespace: dict = {}
    printed = run(block, namespace)
    assert printed.strip() == "[0. 1. 0. 0. 1. 0. 0. 1. 0. 0.]"
    assert jnp.array_equal(ij.top_k(3)(namespace["theta"]), namespace["y"])


def test_getting_started_blocks_run_in_order():
    namespace: dict = {}
    printed = run("\n".join(python_blocks("getting_started.md")), namespace)
    assert namespace["z"].shape == (32, 5, 400)
    assert namespace["g"].shape == namespace["theta"].shape == (400,)
    assert namespace["grads"].shape == namespace["theta_batch"].shape
    assert float(namespace["state"].lam) > 0
    assert "cosine" in printed


def _migration_namespace(block: str) -> dict:
    key = jax.random.key(0)
    namespace = {"jax": jax, "jnp": jnp, "ij": ij, "key": key}
    if "top_k" in block:
        namespace["theta"] = jax.random.normal(key, (4, 20))
        namespace["y"] = jnp.zeros((4, 20)).at[:, :10].set(1.0)
    else:
        sp = ij.graph_shortest_path(*ij.grid_dag_edges(5, 5), 25, source=0, target=24)
        x = jax.random.normal(jax.random.key(1), (8, 5))
        params = {"W": jax.random.normal(key, (5, 40)), "b": jnp.zeros(40)}
        w = jax.vmap(sp)(jax.random.uniform(jax.random.key(2), (8, 40)))
        namespace.update(sp=sp, x=x, params=params, w=w, c_hat=x @ params["W"])
    return namespace


def test_migration_imlejax_blocks_run():
    blocks = [b for b in python_blocks("migration.md") if b.startswith(("# imlejax", "import"))]
    assert len(blocks) == 5
    for block in blocks:
        namespace = _migration_namespace(block)
        run(block, namespace)
        if "def loss(theta)" in block:
            assert jax.grad(namespace["loss"])(namespace["theta"]).shape == (4, 20)
        if "def loss(params" in block:
            grads = jax.grad(namespace["loss"])(
                namespace["params"], namespace["key"], namespace["x"], namespace["w"]
            )
            assert grads["W"].shape == (5, 40)
        if "loss_dpo" in block:
            for name in ("loss_dpo", "loss_pfy", "loss_dbb"):
                assert jnp.isfinite(namespace[name])
