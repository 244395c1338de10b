"""Data-parallel I-MLE training over several processes with ``jax.distributed``.

``python -m experiments.distributed`` starts the training in two processes on this machine (a
localhost coordinator, CPU devices in each process), runs the same training in one process on the
same number of devices and on one device, and compares the parameters; see ``docs/scaling.md``.
"""
