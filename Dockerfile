# One image for the Dagster webserver, the daemon, this code location, the MLflow server and the
# model server (see docker-compose.yaml):
#   webserver:     housing-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml (Dagster's,
#                  behind a password: housing_assets/platform/webserver.py)
#   daemon:        dagster-daemon run -w deploy/workspace.yaml
#   code location: dagster api grpc -h 0.0.0.0 -p 4000 -m housing_assets.definitions (default)
#   a run:         dagster api execute_run ... (started by the daemon's DockerRunLauncher)
#   tuning worker: housing-tuning-worker
#   MLflow server: mlflow server --host 0.0.0.0 --port 5000 ...
#   model server:  housing-serve --host 0.0.0.0 --port 5001 --wait
# Behind a registry mirror: docker build --build-arg PYTHON_IMAGE=mirror.example/python:3.11-slim .
ARG PYTHON_IMAGE=python:3.11-slim

# Stage 1: the virtual environment, built with uv (dependencies first, for the layer cache).
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==0.13.8" \
    && /opt/uv/bin/uv venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
RUN /opt/uv/bin/uv pip install -p /opt/venv/bin/python -r pyproject.toml --extra deploy
COPY housing_assets ./housing_assets
RUN /opt/uv/bin/uv pip install -p /opt/venv/bin/python --no-deps . \
    # Bytecode is compiled at build time (UV_COMPILE_BYTECODE): the non-root user cannot write
    # __pycache__ into the venv, and every process would compile its imports again at start.
    # Test suites of the dependencies are not needed at run time (~150 MB).
    && find /opt/venv/lib/python3.11/site-packages -depth -type d -name tests -prune \
        -exec rm -rf {} +

# Stage 2: the runtime, without build tools.
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_DISABLE_TELEMETRY=true \
    DAGSTER_HOME=/opt/dagster/home \
    HOUSING_DATA_DIR=/opt/dagster/data

# LightGBM needs the OpenMP runtime (the version of the base image's Debian release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin housing

COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/dagster/app
COPY workspace.yaml dagster.yaml ./
COPY housing_assets/defs/smoke.yaml ./configs/smoke.yaml
COPY deploy ./deploy
# The instance file is written into DAGSTER_HOME by the entry point (deploy/entrypoint.sh).
# The other folders are where compose mounts its volumes (a new volume takes the owner of the
# folder it is mounted on): assets, compute logs, and the MLflow server's store.
RUN mkdir -p "$DAGSTER_HOME" "$HOUSING_DATA_DIR/landing" /opt/dagster/logs /opt/mlflow \
    && chown -R housing:housing "$DAGSTER_HOME" "$HOUSING_DATA_DIR" /opt/dagster/logs /opt/mlflow

USER 1000:1000
EXPOSE 3000 4000 5000 5001
ENTRYPOINT ["/opt/dagster/app/deploy/entrypoint.sh"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "housing_assets.definitions"]
