#!/bin/sh
# Entry point of every service of the image.
# docker-compose.yaml mounts the host's GOOGLE_APPLICATION_CREDENTIALS key file at a fixed path
# (or /dev/null when there is none): an empty file means "no key file", so unset the variable
# and let google-auth use its other sources (metadata server, workload identity).
if [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] && [ ! -s "$GOOGLE_APPLICATION_CREDENTIALS" ]; then
  unset GOOGLE_APPLICATION_CREDENTIALS
fi
# The Dagster instance: deploy/dagster.yaml plus where compute logs go (the bucket, if any).
logs=/opt/dagster/app/deploy/compute-logs-local.yaml
if [ -n "${HOUSING_GCS_BUCKET:-}" ]; then
  logs=/opt/dagster/app/deploy/compute-logs-gcs.yaml
  export HOUSING_GCS_COMPUTE_LOG_PREFIX="${HOUSING_GCS_PREFIX:-housing_assets}/compute_logs"
fi
cat /opt/dagster/app/deploy/dagster.yaml "$logs" > "$DAGSTER_HOME/dagster.yaml"
exec "$@"
