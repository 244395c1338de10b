"""The configuration of the distributed training (importable without importing JAX, so that the
launcher can set the device count of its own process first)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 200
    batch: int = 256
    items: int = 50
    features: int = 16
    k: int = 10
    samples: int = 10
    lam: float = 100.0
    lr: float = 0.05
    seed: int = 0


PRESETS = {
    "smoke": Config(steps=4, batch=16, items=20, features=8, k=5, samples=4),
    "default": Config(),
}
