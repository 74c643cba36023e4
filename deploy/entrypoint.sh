#!/bin/sh
# Entry point of every service of the image.
# docker-compose.yaml mounts the host's GOOGLE_APPLICATION_CREDENTIALS key file at a fixed path
# (or /dev/null when there is none): an empty file means "no key file", so unset the variable
# and let google-auth use its other sources (metadata server, workload identity).
if [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] && [ ! -s "$GOOGLE_APPLICATION_CREDENTIALS" ]; then
  unset GOOGLE_APPLICATION_CREDENTIALS
fi
exec "$@"
