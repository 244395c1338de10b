"""What a compiled program does on each device, read from its optimised HLO text.

``jax.jit(f).lower(*args).compile().as_text()`` is the per-device program after SPMD
partitioning: shapes in it are the shapes each device works on. These helpers find the oracle
work (XLA's ``TopK`` custom calls, host callbacks) and the cross-device collectives in it.
"""

from __future__ import annotations

import re

_DEF = re.compile(r"^\s*(?:ROOT\s+)?(%[\w.\-]+) = (\(?[a-z]\w*\[[\d,]*\])")
_CUSTOM_CALL = re.compile(
    r"^\s*(?:ROOT\s+)?%[\w.\-]+ = \(?([a-z]\w*\[[\d,]*\])[^=]*? custom-call\((%[\w.\-]+)[,)]"
    r".*custom_call_target=\"([\w]+)\""
)
_COLLECTIVE = re.compile(
    r" (all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)(?:-start)?\("
)
_CALLBACK_TARGETS = ("xla_ffi_python_cpu_callback", "xla_ffi_python_gpu_callback")


def _shape(text: str) -> str:
    return text.lstrip("(")


def oracle_calls(hlo_text: str) -> list[dict]:
    """The ``TopK`` custom calls and host callbacks: ``{"op", "operand", "result"}`` shapes.

    For ``TopK`` the operand is the ``(rows, m)`` score array and the result the ``(rows, k)``
    values; for a callback both are the shape of the batch of instances it receives.
    """
    shapes = {}
    for line in hlo_text.splitlines():
        match = _DEF.match(line)
        if match:
            shapes[match.group(1)] = _shape(match.group(2))
    calls = []
    for line in hlo_text.splitlines():
        match = _CUSTOM_CALL.match(line)
        if not match:
            continue
        result, operand, target = match.groups()
        if target == "TopK":
            op = "TopK"
        elif target in _CALLBACK_TARGETS:
            op = "callback"
        else:
            continue
        calls.append({"op": op, "operand": shapes.get(operand, "?"), "result": result})
    return calls


def collectives(hlo_text: str) -> dict[str, int]:
    """The number of each cross-device collective in the program."""
    counts = {
        name: 0
        for name in (
            "all-gather",
            "all-reduce",
            "reduce-scatter",
            "all-to-all",
            "collective-permute",
        )
    }
    for line in hlo_text.splitlines():
        for match in _COLLECTIVE.finditer(line):
            counts[match.group(1)] += 1
    return counts


def rows(shape: str) -> int:
    """The number of rows (the product of all dimensions but the last) of ``f32[a,b,m]``."""
    dims = [int(d) for d in shape[shape.index("[") + 1 : -1].split(",") if d]
    out = 1
    for d in dims[:-1]:
        out *= d
    return out
