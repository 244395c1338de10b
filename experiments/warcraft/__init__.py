"""Warcraft shortest paths (appendix C.4): a ResNet learns tile costs through a grid solver.

``data`` loads the original files, ``generate`` writes generated stand-in maps in the same
layout, ``model`` holds the networks, ``configs`` one configuration per gradient estimator,
``metrics`` the loss and the path metrics, ``train`` the training loop, ``profile`` the speed measurements and ``report`` the figures.
"""
