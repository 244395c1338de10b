"""PyEPO's shortest-path benchmark with imlejax estimators, side by side with PyEPO itself.

``python -m experiments.pyepo_sp`` (see ``__main__``); report in ``docs/pyepo_sp.md``.
"""
