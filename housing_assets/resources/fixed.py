"""Resources whose settings the deployment fixes: launch-time run config cannot change them.

A ``ConfigurableResource`` given to ``Definitions`` keeps every field configurable at launch:
a run config (from the UI's launchpad, or any client of its GraphQL API) could point the MLflow
resource, the dataset source or the asset bucket somewhere else, and the run would take the
deployment's credentials there. Wrapped here, the resource has an empty config schema, so such
a run config fails validation before the run is created, naming the field
(``Received unexpected config entry "tracking_uri" at path root:resources:mlflow:config``).
The resource's own set-up and tear-down (``yield_for_execution``) run as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    IOManagerDefinition,
    ResourceDefinition,
    io_manager,
    resource,
)


def fixed_resource(
    value: ConfigurableResource,
    description: str,
    required_resource_keys: set[str] | None = None,
    bind: Callable[[ConfigurableResource, object], ConfigurableResource] | None = None,
) -> ResourceDefinition:
    """``value`` as a resource nothing at launch can reconfigure. ``bind(value, resources)``
    gives it the other resources it holds (``required_resource_keys``), already set up."""

    @resource(
        config_schema={},
        description=description,
        required_resource_keys=required_resource_keys or set(),
    )
    def _fixed(init_context):
        ready = bind(value, init_context.resources) if bind else value
        with _set_up(ready, init_context) as instance:
            yield instance

    return _fixed


def fixed_io_manager(value: ConfigurableIOManager, description: str) -> IOManagerDefinition:
    """An IO manager nothing at launch can reconfigure (where assets are stored)."""

    @io_manager(config_schema={}, description=description)
    def _fixed(init_context):
        with _set_up(value, init_context) as instance:
            yield instance

    return _fixed


@contextlib.contextmanager
def _set_up(value: ConfigurableResource, init_context):
    with value.yield_for_execution(init_context) as instance:
        yield instance
