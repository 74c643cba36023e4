-- A second database on the same PostgreSQL server for the MLflow tracking server.
CREATE DATABASE mlflow OWNER dagster;
