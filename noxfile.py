"""nox sessions: tests, slow tests, 64-bit tests, lint, typecheck, doctest, bench, demo, pyepo."""

import nox

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
        "not slow",
        "-q",
        "--durations=10",
        *session.posargs,
        env={"PYTHONHASHSEED": "0"},
    )


@nox.session
def slow(session):
    """Heavy statistical checks and larger experiment configurations."""
    _install(session, "test")
    session.run("pytest", "-m", "slow", "-q", "--durations=10", *session.posargs)


@nox.session
def tests_x64(session):
    """The default suite with 64-bit floats enabled globally."""
    _install(session, "test")
    session.run("pytest", "-m", "not slow", "-q", *session.posargs, env={"IMLEJAX_X64": "1"})


@nox.session
def doctest(session):
    """Runs the examples in every public docstring."""
    _install(session, "test")
    session.run("pytest", "--doctest-modules", "imlejax", "-q", "-p", "no:cacheprovider")


@nox.session
def lint(session):
    """ruff lint and format check."""
    session.install("ruff>=0.6")
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
def demo(session):
    """About a minute: learns to select the top-5 of 20 items with I-MLE; writes outputs/demo/."""
    _install(session, "experiments")
    session.run("python", "-m", "experiments.demo", *session.posargs)


@nox.session
def pyepo(session):
    """PyEPO's shortest-path benchmark beside PyEPO's own I-MLE; writes docs/results, docs/figures."""
    _install(session, "experiments,pyepo")
    session.run("python", "-m", "experiments.pyepo_sp", *session.posargs)
