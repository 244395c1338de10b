"""Regenerates the outputs and figures of every tutorial and of the Concepts and Choosing pages.

    python docs/tutorials/run_all.py            # everything (a few minutes on 2 CPU cores)
    python docs/tutorials/run_all.py top_k      # some scripts only

Each script runs in its own process from the repository root; its standard output is written to
``docs/tutorials/output/<name>.txt`` (what the pages show) and its figures to
``docs/figures/tutorials/`` (``docs/figures/`` for the Concepts figures). A script whose
assertions fail stops the run with its error.
"""

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPTS = [
    "top_k",
    "host_oracle",
    "shortest_path",
    "flax_nnx",
    "aimle_loop",
    "check_gradient",
    "sharding",
    "concepts_figures",
    "choosing_evidence",
]


def main(names):
    (HERE / "output").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    for name in names or SCRIPTS:
        if name not in SCRIPTS:
            raise SystemExit(f"unknown script {name!r}; choose from {SCRIPTS}")
        print(f"running docs/tutorials/{name}.py", flush=True)
        result = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"docs/tutorials/{name}.py failed")
        (HERE / "output" / f"{name}.txt").write_text(result.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
