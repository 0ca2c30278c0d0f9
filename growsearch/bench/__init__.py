"""Benchmarks that print measured numbers as JSON and record them under docs/.

* :mod:`~growsearch.bench.predictors` -- does a predictor rank expansions by their gain?
* :mod:`~growsearch.bench.growth` -- is growing worth it at all, against training from scratch?
* :mod:`~growsearch.bench.pools` -- the named, versioned candidate pools both use.
"""
