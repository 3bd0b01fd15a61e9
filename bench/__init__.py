"""The benchmark: the bridge under ALM-like load, next to the ceilings measured in the same run.

``python -m bench`` (``make bench``) or ``python -m bench --quick`` (``make bench-quick``);
see bench/README.md.
"""
