"""The stack's run launcher removes old containers of finished runs, on a real Docker engine:
only runs this instance knows and has recorded as finished, the newest ones kept. The
launcher comes from instance config, as deploy/dagster.yaml names it."""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from dagster import Definitions, asset, define_asset_job, instance_for_test, materialize

pytestmark = pytest.mark.deployment

IMAGE = "python:3.11-slim"  # on every CI machine (.ci/run pulls it or builds a stand-in)


@pytest.fixture
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.images.get(IMAGE)
    except Exception as exc:  # no engine, or no image
        if os.environ.get("HOUSING_REQUIRE_DOCKER"):
            pytest.fail(f"Docker engine with {IMAGE} needed: {exc}")
        pytest.skip(f"no Docker engine with {IMAGE} here ({exc})")
    return client


@asset
def trivial() -> int:
    return 1


def test_finished_runs_lose_their_containers_beyond_the_newest_kept(docker_client):
    from housing_assets.platform.docker_launcher import RUN_ID_LABEL, PruningDockerRunLauncher

    launcher_config = {
        "module": "housing_assets.platform.docker_launcher",
        "class": "PruningDockerRunLauncher",
        "config": {"keep_finished_containers": 2},
    }
    created = []

    def exited_container(run_id: str):
        container = docker_client.containers.run(
            IMAGE, ["true"], labels={RUN_ID_LABEL: run_id}, detach=True
        )
        container.wait(timeout=60)
        created.append(container)
        time.sleep(0.05)  # distinct FinishedAt times
        return container

    with instance_for_test(overrides={"run_launcher": launcher_config}) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, PruningDockerRunLauncher)
        assert launcher.keep_finished_containers == 2
        try:
            finished = [materialize([trivial], instance=instance).run_id for _ in range(4)]
            containers = [exited_container(run_id) for run_id in finished]
            # A run whose container died but which monitoring has not failed yet: its exit
            # state must survive to name the cause.
            job = Definitions(
                assets=[trivial], jobs=[define_asset_job("trivial_job")]
            ).resolve_job_def("trivial_job")
            dying = instance.create_run_for_job(job_def=job).run_id
            dead = exited_container(dying)
            stranger = exited_container("a-run-of-another-instance")

            removed = launcher.prune_finished_containers()

            assert set(removed) == {containers[0].id, containers[1].id}
            left = {c.id for c in docker_client.containers.list(all=True)}
            assert {containers[2].id, containers[3].id, dead.id, stranger.id} <= left
            assert not {containers[0].id, containers[1].id} & left
            assert launcher.prune_finished_containers() == []  # nothing more to do
        finally:
            for container in created:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
