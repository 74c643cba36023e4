"""The Dagster UI in a real browser: Debian's Chromium driven headless by Playwright against
`make dev` (the UI behind its password, and the daemon) on 127.0.0.1 with a temporary
DAGSTER_HOME. Screenshots go to test-artifacts/."""

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from housing_assets_testkit import (
    CONTRACT_ASSETS,
    REPO_ROOT,
    background_server,
    free_port,
    materialize_cli,
)

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
# What a user types into the launchpad: a quick search (3 trials on 2 folds).
LAUNCHPAD_YAML = """\
ops:
  tuned_params:
    config:
      n_trials: 3
      cv_folds: 2
"""


@pytest.fixture
def dagster_dev(isolated_env, tmp_path):
    """`make dev` on a free port; yields the UI's address and the password `make dev` made."""
    first = materialize_cli("*", isolated_env)  # upstream assets for tuned_params+
    assert first.returncode == 0, first.stderr[-3000:]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **isolated_env}
    env.pop("HOUSING_UI_PASSWORD", None)
    with background_server(
        ["make", "-s", "dev", f"DEV_PORT={port}"],
        f"{base}/server_info",
        env=env,
        log_path=tmp_path / "dagster_dev.log",
        timeout_s=180,
    ):
        password = (Path(isolated_env["DAGSTER_HOME"]) / "ui-password").read_text().strip()
        yield base, password


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_asset_graph_and_a_materialization_from_the_ui(dagster_dev):
    base, password = dagster_dev
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        # The browser asks for the password once; Playwright answers that prompt.
        page = browser.new_page(
            viewport={"width": 1600, "height": 1000},
            http_credentials={"username": "operator", "password": password},
        )
        page.set_default_timeout(60_000)

        # The global asset graph shows the seven assets: expand the three groups in the graph
        # and in its sidebar, then read the asset names and the checks' status.
        page.goto(f"{base}/asset-groups")
        groups = page.locator("[class*=collapsedGroupNodeBox]")
        expect(groups.first).to_be_visible()
        while groups.count():
            groups.first.click()
            page.wait_for_timeout(500)
        carets = page.locator("button:has([aria-label=arrow_drop_down])")
        for i in range(carets.count()):
            carets.nth(i).click()
        for asset in CONTRACT_ASSETS:
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        expect(page.get_by_text("2 / 2 Passed").first).to_be_visible()  # registered_model's checks
        page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))

        # The asset checks of imputed_housing are listed on its page.
        page.goto(f"{base}/assets/imputed_housing?view=checks")
        expect(page.get_by_text("imputation_rmse").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "asset_checks.png"))

        # Select tuned_params+ in the lineage's filter, open the launchpad, type a quick
        # configuration in its YAML editor, launch, and wait for the run to succeed.
        page.goto(f"{base}/asset-groups")
        page.locator(".CodeMirror").first.click()  # "Search and filter assets"
        page.keyboard.type('key:"tuned_params"+')
        page.keyboard.press("Enter")
        for asset in ("tuned_params", "registered_model"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        expect(page.get_by_text("model_comparison", exact=True)).to_have_count(0)
        materialize = page.get_by_role("button", name="Materialize all").locator("xpath=../..")
        materialize.locator("button:has([aria-label=arrow_drop_down])").click()
        page.get_by_text("Open launchpad").click()
        launchpad = page.get_by_role("dialog")
        editor = launchpad.locator(".CodeMirror").first
        expect(editor).to_contain_text("n_trials")  # scaffolded with the defaults
        editor.evaluate("(e, text) => e.CodeMirror.setValue(text)", LAUNCHPAD_YAML)
        launch = launchpad.locator("button", has_text="Materialize").last
        expect(launch).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "launchpad.png"))
        launch.click()
        page.wait_for_url("**/runs/**")
        run_id = page.url.rstrip("/").split("/")[-1]
        instance = DagsterInstance.get()
        deadline = time.monotonic() + 400
        while not (run := instance.get_run_by_id(run_id)).is_finished:
            assert time.monotonic() < deadline, "the run launched from the UI did not finish"
            time.sleep(2)
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.asset_selection == {AssetKey("tuned_params"), AssetKey("registered_model")}
        assert run.run_config["ops"] == yaml.safe_load(LAUNCHPAD_YAML)["ops"]
        trials = instance.get_latest_materialization_event(AssetKey("tuned_params"))
        assert trials.run_id == run_id
        assert trials.asset_materialization.metadata["trials"].value == 3
        page.goto(f"{base}/runs/{run_id}")
        expect(page.get_by_text("Success").first).to_be_visible()
        expect(page.get_by_text("Loading run logs")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "run_success.png"))
        browser.close()
