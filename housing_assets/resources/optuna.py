"""Where Optuna studies live when several worker processes share one search."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class OptunaStorage(ConfigurableResource):
    """An Optuna RDB storage URL: ``HOUSING_OPTUNA_STORAGE`` (the compose stack's PostgreSQL),
    else a SQLite file in ``default_dir``. One worker needs none: its study stays in memory."""

    url: str | None = None
    default_dir: str = "data/optuna"

    def for_workers(self, n_workers: int, open_to_workers: bool = False) -> str | None:
        """The storage a search with ``n_workers`` processes shares, or opened to workers
        apart from the run (None: in memory)."""
        if n_workers <= 1 and not open_to_workers:
            return None
        if self.url:
            return self.url
        Path(self.default_dir).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(self.default_dir) / 'studies.db'}"
