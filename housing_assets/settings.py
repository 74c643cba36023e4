"""The one module that reads the environment: every setting the project takes from it, read
when asked (never at import), checked, and named in the error when it is wrong.

``HOUSING_DEPLOYMENT`` picks the deployment, and with it the resource set
(``housing_assets/resources/``):

- ``local``: assets on local disk, an embedded MLflow store in the data folder (the default);
- ``gcs``: assets in the Google Cloud Storage bucket ``HOUSING_GCS_BUCKET`` (required);
- ``compose``: the Docker stack: an MLflow server (``MLFLOW_TRACKING_URI``) and a shared
  Optuna storage (``HOUSING_OPTUNA_STORAGE``), both required; assets on the data volume, or
  in ``HOUSING_GCS_BUCKET`` when it is set.

Unset, it is ``gcs`` when ``HOUSING_GCS_BUCKET`` is set (as the contract promises for that
variable) and ``local`` otherwise. docs/configuration.md lists every variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from housing_assets.io.source import DEFAULT_SOURCE_URL

DEPLOYMENTS = ("local", "gcs", "compose")
REQUIRED = {
    "local": (),
    "gcs": ("HOUSING_GCS_BUCKET",),
    "compose": ("MLFLOW_TRACKING_URI", "HOUSING_OPTUNA_STORAGE"),
}


class SettingsError(ValueError):
    """A setting that is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    deployment: str
    data_dir: Path
    source_url: str
    source_from_env: bool  # HOUSING_SOURCE_URL set: the UI shows the variable, not the URL
    landing_url: str
    landing_settle_s: float
    gcs_bucket: str | None
    gcs_prefix: str
    gcp_project: str | None
    mlflow_tracking_uri: str
    mlflow_from_env: bool
    mlflow_artifacts: str | None
    optuna_storage: str | None
    wandb_mode: str
    threads: int
    sensor_interval_s: int
    retrain_config: str | None  # a YAML run-config file for sensor-triggered runs
    batch_max_mb: float  # a landing batch's size once decompressed (1 MB = 10**6 bytes)
    batch_max_rows: int  # a landing batch's data rows
    live_error_margin_pp: float  # live wMAPE above the champion's test wMAPE that warns
    # The alert webhook (a credential: never printed, not even in this object's repr).
    alert_webhook_url: str | None = field(repr=False)
    ui_url: str  # the Dagster UI as its users reach it, for links in alerts
    dagster_home: str | None  # Dagster's own instance folder (DAGSTER_HOME)
    serve_allow_missing_digest: bool  # housing-serve loads versions without a digest tag
    cache_dir: Path  # the empty MLflow schema cache (io/mlflow_store.py)
    storage_emulator_host: str | None  # a local GCS server (google-cloud-storage reads it too)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        bucket = get("HOUSING_GCS_BUCKET")
        deployment = get("HOUSING_DEPLOYMENT") or ("gcs" if bucket else "local")
        if deployment not in DEPLOYMENTS:
            raise SettingsError(
                f"HOUSING_DEPLOYMENT={deployment!r} is not a deployment: use one of "
                f"{', '.join(DEPLOYMENTS)}"
            )
        missing = [name for name in REQUIRED[deployment] if not get(name)]
        if missing:
            raise SettingsError(
                f"HOUSING_DEPLOYMENT={deployment} needs {' and '.join(missing)} "
                "(see docs/configuration.md)"
            )
        if bucket and deployment == "local":
            raise SettingsError(
                "HOUSING_GCS_BUCKET is set but HOUSING_DEPLOYMENT=local keeps assets on local "
                "disk: unset one of them"
            )
        data_dir = Path(get("HOUSING_DATA_DIR") or Path.cwd() / "data").resolve()
        tracking_uri = get("MLFLOW_TRACKING_URI")
        artifacts = get("HOUSING_MLFLOW_ARTIFACTS")
        if artifacts is None and tracking_uri is None:
            artifacts = (data_dir / "mlflow" / "artifacts").as_uri()
        project = get("GOOGLE_CLOUD_PROJECT")
        if project is None and get("STORAGE_EMULATOR_HOST"):
            project = "local"  # a local GCS server needs a name, not a real project
        cache = get("HOUSING_CACHE_DIR")
        cache_dir = Path(cache) if cache else Path(get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(
            deployment=deployment,
            data_dir=data_dir,
            source_url=get("HOUSING_SOURCE_URL") or DEFAULT_SOURCE_URL,
            source_from_env=get("HOUSING_SOURCE_URL") is not None,
            landing_url=get("HOUSING_LANDING_URL") or str(data_dir / "landing"),
            landing_settle_s=_number(env, "HOUSING_LANDING_SETTLE_S", 3.0, float),
            gcs_bucket=bucket,
            gcs_prefix=get("HOUSING_GCS_PREFIX") or "housing_assets",
            gcp_project=project,
            mlflow_tracking_uri=tracking_uri or f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
            mlflow_from_env=tracking_uri is not None,
            mlflow_artifacts=artifacts,
            optuna_storage=get("HOUSING_OPTUNA_STORAGE"),
            wandb_mode=get("WANDB_MODE") or ("online" if get("WANDB_API_KEY") else "offline"),
            threads=_number(env, "HOUSING_THREADS", 0, int) or _usable_cores(),
            sensor_interval_s=_number(env, "HOUSING_SENSOR_INTERVAL_S", 30, int, positive=True),
            retrain_config=get("HOUSING_RETRAIN_CONFIG"),
            batch_max_mb=_number(env, "HOUSING_BATCH_MAX_MB", 50.0, float, positive=True),
            batch_max_rows=_number(env, "HOUSING_BATCH_MAX_ROWS", 100_000, int, positive=True),
            live_error_margin_pp=_number(env, "HOUSING_LIVE_ERROR_MARGIN_PP", 3.0, float),
            alert_webhook_url=_webhook_url(env),
            ui_url=get("HOUSING_UI_URL") or "http://localhost:3000",
            cache_dir=cache_dir if cache else cache_dir / "housing_assets",
            storage_emulator_host=get("STORAGE_EMULATOR_HOST"),
            dagster_home=get("DAGSTER_HOME"),
            serve_allow_missing_digest=(get("HOUSING_SERVE_ALLOW_MISSING_DIGEST") or "").lower()
            in ("1", "true", "yes"),
        )


#: Host names the Dagster UI answers by default: loopback only.
DEFAULT_UI_HOSTS = ("localhost", "127.0.0.1", "::1")
MIN_UI_PASSWORD = 12


@dataclass(frozen=True)
class UISettings:
    """Who may use the Dagster UI and by which names (``housing-webserver``, docs/security.md)."""

    user: str
    password: str
    allowed_hosts: tuple[str, ...]  # host names, any port
    allowed_origins: tuple[str, ...]  # exact origins; empty: http(s) on an allowed host

    def __repr__(self) -> str:  # never print the password
        return f"UISettings(user={self.user!r}, allowed_hosts={self.allowed_hosts!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UISettings:
        env = os.environ if environ is None else environ
        password = env.get("HOUSING_UI_PASSWORD") or None
        path = env.get("HOUSING_UI_PASSWORD_FILE") or None
        if password is None and path is not None:
            try:
                password = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"HOUSING_UI_PASSWORD_FILE={path}: cannot read it ({exc.strerror})"
                ) from None
        if not password:
            raise SettingsError(
                "The Dagster UI needs a password: set HOUSING_UI_PASSWORD or "
                "HOUSING_UI_PASSWORD_FILE (a file holding it)"
            )
        if len(password) < MIN_UI_PASSWORD:
            source = (
                "HOUSING_UI_PASSWORD_FILE"
                if path and not env.get("HOUSING_UI_PASSWORD")
                else "HOUSING_UI_PASSWORD"
            )
            raise SettingsError(
                f"{source}: the password needs at least {MIN_UI_PASSWORD} characters"
            )
        hosts = _names(env.get("HOUSING_UI_ALLOWED_HOSTS")) or DEFAULT_UI_HOSTS
        origins = _names(env.get("HOUSING_UI_ALLOWED_ORIGINS"))
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise SettingsError(
                    f"HOUSING_UI_ALLOWED_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], no path)"
                )
        return cls(
            user=env.get("HOUSING_UI_USER") or "operator",
            password=password,
            allowed_hosts=tuple(h.strip("[]") for h in hosts),
            allowed_origins=origins,
        )


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in (text or "").split(",") if part.strip())


def _number(env: Mapping[str, str], name: str, default, kind, positive: bool = False):
    text = env.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a number ({kind.__name__})") from None
    if value < 0 or (positive and value == 0):
        raise SettingsError(f"{name}={text!r} must be {'positive' if positive else '0 or more'}")
    return value


def _webhook_url(env: Mapping[str, str]) -> str | None:
    """HOUSING_ALERT_WEBHOOK_URL_FILE's content (an empty file: no alerts), else
    HOUSING_ALERT_WEBHOOK_URL. Errors name the variable, never the URL."""
    path = env.get("HOUSING_ALERT_WEBHOOK_URL_FILE")
    if path:
        try:
            url = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"HOUSING_ALERT_WEBHOOK_URL_FILE={path!r} cannot be read ({exc.strerror})"
            ) from None
        name = "HOUSING_ALERT_WEBHOOK_URL_FILE's content"
    else:
        url, name = (
            (env.get("HOUSING_ALERT_WEBHOOK_URL") or "").strip(),
            "HOUSING_ALERT_WEBHOOK_URL",
        )
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise SettingsError(f"{name} is not an http(s) URL")
    return url


def _usable_cores() -> int:
    """Every core this process may run on (its CPU affinity, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load() -> Settings:
    """The settings of this environment, read now."""
    return Settings.from_env()


def data_dir() -> Path:
    return load().data_dir


def threads() -> int:
    """Threads for LightGBM, forests, k-NN and joblib (``HOUSING_THREADS``, else usable cores)."""
    return load().threads


def mlflow_tracking_uri() -> str:
    return load().mlflow_tracking_uri
