"""Strict test configuration shared by the whole suite.

* Four host CPU devices, so that sharding and ``pmap`` are exercised on any machine.
* XLA's LLVM backend runs at optimisation level 0: the suite compiles several hundred small
  programs, and LLVM's optimisation passes are about half of their compile time (the demo smoke
  test takes 6 instead of 13 CPU seconds). XLA's own graph passes still run, and no test measures
  speed. Setting ``XLA_FLAGS`` in the environment replaces these flags.
* Rank promotion raises: implicit broadcasting of different ranks is a bug in library code.
* ``IMLEJAX_X64=1`` runs the whole suite with 64-bit floats (the ``tests_x64`` nox session).
* ``jax.enable_x64`` is the context manager of jax >= 0.8; older versions (the ``oldest`` nox
  session) name it ``jax.experimental.enable_x64``.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true",
)

import jax  # noqa: E402

if not hasattr(jax, "enable_x64"):
    from jax.experimental import enable_x64

    jax.enable_x64 = enable_x64

jax.config.update("jax_numpy_rank_promotion", "raise")
if os.environ.get("IMLEJAX_X64") == "1":
    jax.config.update("jax_enable_x64", True)
