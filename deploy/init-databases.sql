-- Databases beside Dagster's on the same PostgreSQL server: MLflow's tracking store, and
-- Optuna's RDB storage for tuning workers (Optuna and Dagster both keep an `alembic_version`
-- table, so they cannot share one database).
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
