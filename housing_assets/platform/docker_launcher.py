"""dagster-docker's ``DockerRunLauncher``, which also removes the containers of finished runs.

Each run leaves a stopped container behind (for ``docker logs`` and its exit state): one per
retrain, a thousand after a thousand batches. At every launch this launcher removes the
containers of this instance's finished runs beyond the newest ``keep_finished_containers``.
A container is removed only once Dagster has recorded its run as finished, so run monitoring
has always read a dead container's state (its exit code names the cause) before it goes, and
containers of runs this instance does not know (another stack's) are never touched.
"""

from __future__ import annotations

import logging

import docker
import docker.errors
from dagster import Field, IntSource
from dagster_docker import DockerRunLauncher

logger = logging.getLogger(__name__)
RUN_ID_LABEL = "dagster/run_id"  # dagster-docker labels every run container with it


class PruningDockerRunLauncher(DockerRunLauncher):
    def __init__(self, inst_data=None, keep_finished_containers: int = 20, **docker_config):
        super().__init__(inst_data=inst_data, **docker_config)
        if keep_finished_containers < 0:
            raise ValueError("keep_finished_containers must be 0 or more")
        self.keep_finished_containers = keep_finished_containers

    @classmethod
    def config_type(cls):
        return {
            **DockerRunLauncher.config_type(),
            "keep_finished_containers": Field(
                IntSource,
                is_required=False,
                default_value=20,
                description="Containers of finished runs kept (newest first); older ones are "
                "removed at each launch.",
            ),
        }

    def launch_run(self, context) -> None:
        super().launch_run(context)
        try:
            removed = self.prune_finished_containers()
        except docker.errors.DockerException as exc:  # housekeeping never fails a launch
            logger.warning("could not remove finished run containers: %s", exc)
            return
        if removed:
            logger.info("removed %d container(s) of finished runs", len(removed))

    def prune_finished_containers(self) -> list[str]:
        """Remove the containers of finished runs beyond the newest kept; their ids."""
        client = docker.from_env()
        finished = []
        for container in client.containers.list(all=True, filters={"label": RUN_ID_LABEL}):
            if container.status in ("running", "restarting"):
                continue
            run = self._instance.get_run_by_id(container.labels[RUN_ID_LABEL])
            if run is None or not run.is_finished:
                continue  # another instance's run, or one monitoring has not failed yet
            finished.append((container.attrs["State"].get("FinishedAt", ""), container))
        finished.sort(key=lambda pair: pair[0], reverse=True)
        removed = []
        for _, container in finished[self.keep_finished_containers :]:
            try:
                container.remove()
            except docker.errors.NotFound:
                continue  # removed meanwhile (by an operator, or the other launcher)
            removed.append(container.id)
        return removed
