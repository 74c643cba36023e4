"""The benchmark scripts, run from the repository root as modules:

    .venv/bin/python -m benchmarks.<name> --help

Each saves its result in benchmarks/results/<name>.json and renders docs/benchmark-results.md
again (benchmarks.report). The helpers they share with the tests are in housing_assets_testkit.
"""
