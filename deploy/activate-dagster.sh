
# housing_assets (appended by `make setup`): the dagster CLI uses this code location and the
# project's instance, so `dagster asset materialize --select tuned_params+` works as typed.
export DAGSTER_MODULE_NAME=housing_assets.definitions
export DAGSTER_HOME="${DAGSTER_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/../.." && pwd)/.dagster_home}"
# `dagster dev` hangs at start when DAGSTER_MODULE_NAME is set (it reads workspace.yaml and
# [tool.dagster] itself): run it without the variable.
dagster() {
  if [ "${1:-}" = dev ]; then env -u DAGSTER_MODULE_NAME dagster "$@"; else command dagster "$@"; fi
}
