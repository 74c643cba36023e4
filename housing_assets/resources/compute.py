from dagster import ConfigurableResource


class Compute(ConfigurableResource):
    """How many threads a step may use: LightGBM, forests, k-NN and joblib all take theirs from
    here. Default (resources/__init__.py): HOUSING_THREADS, else the cores this process may run
    on. Results are identical for a fixed seed and thread count."""

    threads: int
