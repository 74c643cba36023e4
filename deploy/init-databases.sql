-- PostgreSQL for docker-compose.yaml, run once by the image's entry point (psql, as the
-- superuser) when the data volume is new. One login role per database, owning it, and the
-- only role besides the superuser that may connect to it: Dagster's runs, events and schedules
-- (dagster), MLflow's tracking store (mlflow), Optuna's studies for tuning workers (optuna;
-- Optuna and Dagster both keep an `alembic_version` table, so they cannot share a database).
-- Passwords come from the secret files compose mounts under /run/secrets.

-- No service uses the superuser: its password, which the image needs to create it, is dropped
-- first, so it can log in only from inside this container (`docker compose exec postgres psql
-- -U postgres`, the image's local trust), never over the network.
ALTER ROLE CURRENT_USER PASSWORD NULL;

\set dagster_pw `cat /run/secrets/dagster_db_password`
\set mlflow_pw `cat /run/secrets/mlflow_db_password`
\set optuna_pw `cat /run/secrets/optuna_db_password`
SELECT least(length(:'dagster_pw'), length(:'mlflow_pw'), length(:'optuna_pw')) < 12 AS weak \gset
\if :weak
  \echo 'init-databases.sql: a /run/secrets/*_db_password file is missing or shorter than 12 characters'
  DO $$ BEGIN RAISE EXCEPTION 'database passwords missing: see the README, The compose stack'; END $$;
\endif

CREATE ROLE dagster LOGIN PASSWORD :'dagster_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE optuna LOGIN PASSWORD :'optuna_pw';
CREATE DATABASE dagster OWNER dagster;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE optuna OWNER optuna;
REVOKE CONNECT, TEMPORARY ON DATABASE dagster, mlflow, optuna, postgres FROM PUBLIC;
