"""Pure machine-learning logic: plain typed functions and scikit-learn estimators.

Nothing in this package imports Dagster, so every step can be unit-tested, profiled and reused
in a bare script (see ``benchmarks/``).
"""
