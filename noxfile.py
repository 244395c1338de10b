"""nox sessions (`nox -l` lists them): tests, distributed, oldest, slow, lint, doctest, bench, scaling,
compare, pyepo, docs, ..."""

import nox

# The oldest releases pyproject.toml admits: jax/jaxlib for the core library (0.5.0 is the first
# release whose default PRNG, partitionable threefry, the fixed-key tests are written against),
# and the oldest Flax stack the layers in imlejax.flax work with (flax 0.12.5: nnx.view appeared
# in 0.12.4 and set_view may return None from 0.12.5; it needs jax >= 0.8.1 and optax 0.2.6).
OLDEST_JAX = "0.5.0"
OLDEST_FLAX = ("flax==0.12.5", "optax==0.2.6", "jax==0.8.1", "jaxlib==0.8.1")
# Tests of jax's own newer features, deselected on OLDEST_JAX: jax.shard_map (jax >= 0.6.1) and,
# with check_vma, the psum that autodiff inserts for a replicated input (jax >= 0.9).
NEWER_JAX_TESTS = ("tests/test_aimle.py::test_sharded_step_equals_one_device",)
# Test modules of data parallelism under sharded jit, which needs jax.shard_map and jax.typeof
# (on older jax the oracle calls are not partitioned; imlejax._sharding).
SHARDING_TESTS = ("tests/test_sharding.py",)
# The sharding tutorial asserts the per-device oracle work, which needs the same jax features
# (jax.extend.core.jaxprs_in_params among them: absent from jax 0.8.1).
SHARDING_TUTORIAL = "tests/test_tutorials.py::test_tutorial_runs[sharding]"
# Test modules that import flax or optax (the Flax layers and the experiments).
FLAX_TESTS = (
    "tests/test_flax.py",
    "tests/test_dvae.py",
    "tests/test_synthetic.py",
    "tests/test_demo.py",
    "tests/test_l2x.py",
    "tests/test_warcraft.py",
    "tests/test_pyepo_sp.py",
    "tests/test_tutorials.py",
)

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint", "doctest"]


def _install(session, extra):
    session.install("-e", f".[{extra}]")


@nox.session
def tests(session):
    """The default suite (fast; excludes tests marked slow), including the public-API doc checks."""
    _install(session, "test")
    session.run(
        "pytest",
        "-m",
        "not slow and not distributed",
        "-q",
        "--durations=15",
        # One pytest worker per core; a test file stays on one worker, so that its module
        # fixtures are built once.
        "-n",
        "auto",
        "--dist",
        "loadfile",
        *session.posargs,
        env={"PYTHONHASHSEED": "0"},
    )


@nox.session
def distributed(session):
    """Multi-process training with jax.distributed: two processes on this machine (about 30 s)."""
    _install(session, "test")
    session.run("pytest", "-m", "distributed", "-q", "--durations=15", *session.posargs)


@nox.session
def oldest(session):
    """The default suite on the oldest supported jax/jaxlib, ``OLDEST_JAX``, without the modules
    that need flax (every flax release with the NNX API the layers use needs a newer jax)."""
    session.install(
        "-e", ".", "pytest>=8", "networkx>=3", f"jax=={OLDEST_JAX}", f"jaxlib=={OLDEST_JAX}"
    )
    session.run(
        "python", "-c", "import jax, jaxlib; print('jax', jax.__version__, jaxlib.__version__)"
    )
    ignore = [f"--ignore={path}" for path in (*FLAX_TESTS, *SHARDING_TESTS)]
    deselect = [f"--deselect={test}" for test in NEWER_JAX_TESTS]
    session.run(
        "pytest", "-m", "not slow and not distributed", "-q", *ignore, *deselect, *session.posargs
    )


@nox.session
def oldest_flax(session):
    """The tests that need flax, on the oldest supported Flax stack ``OLDEST_FLAX``."""
    session.install("-e", ".[test]", *OLDEST_FLAX)
    session.run(
        "python", "-c", "import flax, jax; print('flax', flax.__version__, 'jax', jax.__version__)"
    )
    session.run(
        "pytest",
        "-m",
        "not slow and not distributed",
        "-q",
        *FLAX_TESTS,
        f"--deselect={SHARDING_TUTORIAL}",
        *session.posargs,
    )


@nox.session
def slow(session):
    """Heavy statistical checks and larger experiment configurations."""
    _install(session, "test")
    session.run("pytest", "-m", "slow", "-q", "--durations=15", *session.posargs)


@nox.session
def tests_x64(session):
    """The default suite with 64-bit floats enabled globally."""
    _install(session, "test")
    session.run(
        "pytest",
        "-m",
        "not slow and not distributed",
        "-q",
        *session.posargs,
        env={"IMLEJAX_X64": "1"},
    )


@nox.session
def doctest(session):
    """Runs the examples in every public docstring."""
    _install(session, "test")
    session.run("pytest", "--doctest-modules", "imlejax", "-q", "-p", "no:cacheprovider")


@nox.session
def lint(session):
    """ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: the formatter's style changes between releases
    session.run("ruff", "check", "imlejax", "tests", "experiments", "noxfile.py")
    session.run("ruff", "format", "--check", "imlejax", "tests", "experiments", "noxfile.py")


@nox.session
def typecheck(session):
    """mypy over the package."""
    _install(session, "test")
    session.install("mypy>=1.10")
    session.run("mypy", "imlejax")


@nox.session
def bench(session):
    """Transform cost over the bare solver cost, SoG over Gumbel sampling cost, and the grid
    shortest-path oracle against SciPy's and a Python Dijkstra."""
    _install(session, "test")
    session.run("python", "-m", "experiments.benchmarks.imle_bench", *session.posargs)
    session.run("python", "-m", "experiments.benchmarks.sp_bench")


@nox.session
def scaling(session):
    """I-MLE gradient throughput and per-device oracle work on 1, 2 and 4 host devices."""
    _install(session, "test")
    args = session.posargs or ["--devices", "1,2,4"]
    session.run("python", "-m", "experiments.benchmarks.scaling", *args)


@nox.session
def compare(session):
    """imlejax against the same I-MLE gradient written with PyTorch ops, timed in one process."""
    _install(session, "test,compare")  # compare pins torch==2.13.0 (the CPU wheel)
    session.run("python", "-m", "experiments.benchmarks.compare", *session.posargs)


@nox.session
def demo(session):
    """About a minute: learns to select the top-5 of 20 items with I-MLE; writes outputs/demo/."""
    _install(session, "experiments")
    session.run("python", "-m", "experiments.demo", *session.posargs)


@nox.session
def docs(session):
    """The documentation site, built strictly (a broken link or formula is an error) into site/."""
    _install(session, "docs")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def pyepo(session):
    """PyEPO's shortest-path benchmark beside PyEPO's own I-MLE; writes docs/results, docs/figures."""
    _install(session, "experiments,pyepo")
    session.run("python", "-m", "experiments.pyepo_sp", *session.posargs)
