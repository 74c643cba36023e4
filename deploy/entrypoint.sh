#!/bin/sh
# Entry point of every service of the image.
# Secrets arrive as files (compose `secrets:`, under /run/secrets). The tools below read these
# variables from their environment only (Dagster's dagster.yaml `env:`, libpq, the MLflow client
# and server): a service sets NAME_FILE and this exports NAME from that file, for this service's
# process alone. `docker exec ... env` shows only the path, so a command run by `docker compose
# exec` that needs a secret goes through this script too, as the daemon's health check does.
# A named list, not every *_FILE: SSL_CERT_FILE and the like are paths, and housing-webserver
# reads HOUSING_UI_PASSWORD_FILE itself.
#
# The code service describes the container of each of its runs (deploy/run_container_context.py)
# before any secret is read: the run gets the same variables, volumes and secret files.
if [ -n "${HOUSING_RUN_VOLUMES_FROM:-}" ] && [ -z "${DAGSTER_CONTAINER_CONTEXT:-}" ]; then
  DAGSTER_CONTAINER_CONTEXT=$(python /opt/dagster/app/deploy/run_container_context.py) || exit 78
  export DAGSTER_CONTAINER_CONTEXT
fi
# W&B's key is optional: an empty file (deploy/no-wandb-key, when the host has none) or none at
# all (an optional Kubernetes Secret left out) means no key.
for name in DAGSTER_POSTGRES_PASSWORD PGPASSWORD MLFLOW_TRACKING_PASSWORD \
  MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY WANDB_API_KEY; do
  eval "file=\${${name}_FILE:-}"
  [ -n "$file" ] || continue
  if [ "$name" = WANDB_API_KEY ] && [ ! -s "$file" ]; then
    unset WANDB_API_KEY_FILE
    continue
  fi
  if [ ! -f "$file" ] || [ ! -r "$file" ] || [ ! -s "$file" ]; then
    echo "entrypoint: ${name}_FILE=$file is missing, empty or unreadable by uid $(id -u):" \
      "create the secret files (README, 'The compose stack') and chmod 644 them" >&2
    exit 78
  fi
  value=$(cat "$file")
  export "$name=$value"
  unset "${name}_FILE"
done
# docker-compose.yaml hands the code service the host's GOOGLE_APPLICATION_CREDENTIALS key file
# (or an empty file when there is none): an empty file means "no key file", so unset the variable
# and let google-auth use its other sources (metadata server, workload identity).
if [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] && [ ! -s "$GOOGLE_APPLICATION_CREDENTIALS" ]; then
  unset GOOGLE_APPLICATION_CREDENTIALS
fi
# The daemon and the webserver launch and stop run containers through the host's Docker socket
# (compose adds the socket's group, DOCKER_GID): without access every run would fail at launch.
if [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ]; then
  echo "entrypoint: uid $(id -u) cannot use /var/run/docker.sock (group $(stat -c %g \
/var/run/docker.sock)): set DOCKER_GID to that group, e.g. export DOCKER_GID=\$(stat -c %g \
/var/run/docker.sock), and start the stack again" >&2
  exit 78
fi
# The Dagster instance: deploy/dagster.yaml plus where compute logs go (the bucket, if any).
logs=/opt/dagster/app/deploy/compute-logs-local.yaml
if [ -n "${HOUSING_GCS_BUCKET:-}" ]; then
  logs=/opt/dagster/app/deploy/compute-logs-gcs.yaml
  export HOUSING_GCS_COMPUTE_LOG_PREFIX="${HOUSING_GCS_PREFIX:-housing_assets}/compute_logs"
fi
# (Written aside, then renamed: health checks run through this script while the service runs.)
cat /opt/dagster/app/deploy/dagster.yaml "$logs" > "$DAGSTER_HOME/.dagster.yaml.$$"
mv -f "$DAGSTER_HOME/.dagster.yaml.$$" "$DAGSTER_HOME/dagster.yaml"
exec "$@"
