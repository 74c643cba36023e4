# One image for the Dagster webserver, the daemon, this code location, the MLflow server and the model server.
#   webserver:     dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
#   daemon:        dagster-daemon run -w workspace.yaml
#   code location: dagster code-server start -h 0.0.0.0 -p 4000 -m housing_assets.definitions (default)
#   MLflow server: mlflow server --host 0.0.0.0 --port 5000 ...;  model: housing-serve --host 0.0.0.0 --port 5001
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DAGSTER_HOME=/opt/dagster/home \
    HOUSING_DATA_DIR=/opt/dagster/data

# LightGBM needs the OpenMP runtime (the version of the base image's Debian release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY housing_assets ./housing_assets
RUN pip install "uv==0.13.8" && uv pip install --system --no-cache ".[deploy]"

COPY workspace.yaml dagster.yaml ./
COPY configs ./configs
COPY deploy ./deploy
RUN mkdir -p "$DAGSTER_HOME" "$HOUSING_DATA_DIR" && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 3000 4000 5000 5001
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "housing_assets.definitions"]
