"""The Kubernetes deployment (deploy/k8s), checked offline, and its agreement with compose.

- Every object `kubectl kustomize deploy/k8s` renders, and the Secrets deploy/k8s/secrets makes
  (rendered from stand-in files), validates against Kubernetes' own schemas (kubernetes-validate,
  strict: an unknown field fails). Without kubectl the files are read as they are.
- deploy/k8s/values.yaml uses the keys of Dagster's Helm chart with the chart's types, and what
  it names (Secrets, ConfigMaps, volumes, the module) exists.
- deploy/services.yaml, the one list of each service's variables and secrets, matches
  docker-compose.yaml and deploy/k8s service by service, both ways; the image and the ports
  agree too.
- Security contexts, resources, probes, the MLflow volume and the network policies.

No cluster, no Helm binary, no Docker: the chart itself is not rendered here.
"""

from __future__ import annotations

import filecmp
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yaml"
SERVICES = yaml.safe_load((ROOT / "deploy" / "services.yaml").read_text())
VALUES = yaml.safe_load((K8S / "values.yaml").read_text())
KUBECTL = shutil.which("kubectl")

# Kubernetes versions to validate against: the kubectl on these machines (1.32) and the newest
# schemas kubernetes-validate ships with (1.37).
K8S_VERSIONS = ("1.32.0", "1.37.0")

# Set by Dagster's chart on the pods it renders (deployment-user.yaml, deployment-daemon.yaml:
# DAGSTER_PG_PASSWORD from the Secret global.postgresqlSecretName; DAGSTER_HOME from its env
# ConfigMaps), and by the run launcher on each run's pod: the instance variables of
# services.yaml's dagster_instance.k8s. Dagster's own plumbing (DAGSTER_CURRENT_IMAGE, the
# container context, the run namespace) is not the project's and is not listed.
CHART_INSTANCE_ENV = {"DAGSTER_HOME", "DAGSTER_PG_PASSWORD"}

# The UI is reached through `kubectl port-forward` (or an Ingress the operator adds): no policy
# lets a pod in, as compose publishes it on 127.0.0.1 only.
NO_INGRESS_FROM_PODS = {"webserver"}


# ---------------------------------------------------------------------------------------------
# Rendering


def _render(directory: Path) -> list[dict]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    """The objects of deploy/k8s: rendered by kustomize, else the files as written."""
    if KUBECTL:
        return _render(K8S)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    for doc in docs:
        doc.setdefault("metadata", {}).setdefault("namespace", kustomization["namespace"])
    return docs


@pytest.fixture(scope="module")
def secret_objects(tmp_path_factory) -> list[dict]:
    """The Secrets of deploy/k8s/secrets, made from stand-in files in a copy of the folder."""
    folder = tmp_path_factory.mktemp("k8s-secrets")
    kustomization = yaml.safe_load((K8S / "secrets" / "kustomization.yaml").read_text())
    shutil.copy(K8S / "secrets" / "kustomization.yaml", folder / "kustomization.yaml")
    made = []
    for generator in kustomization["secretGenerator"]:
        data = {}
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")
            (folder / path).write_text("stand-in-value-0123456789\n")
            data[key or Path(path).name] = "c3RhbmQtaW4="
        made.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"], "namespace": kustomization["namespace"]},
                "type": "Opaque",
                "data": data,
            }
        )
    return _render(folder) if KUBECTL else made


def _named(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects in deploy/k8s"
    return found[0]


def _workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def _pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------------------------
# Kubernetes' own schemas


def test_kustomize_renders_every_file(objects):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "values.yaml"}
    assert listed == manifests, "kustomization.yaml must list every manifest of deploy/k8s"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "housing"
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(objects, secret_objects, version):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (the `test` extra of pyproject.toml)",
    )
    # The validator must catch a broken object, or its passes mean nothing.
    broken = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "broken"},
        "spec": {"ports": [{"port": "x"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)

    errors = []
    for obj in [*objects, *secret_objects]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert len(objects) >= 20 and len(secret_objects) == 8


def test_secrets_are_generated_as_services_yaml_names_them(secret_objects):
    made = {s["metadata"]["name"]: set(s["data"]) for s in secret_objects}
    expected = {
        spec["k8s"]: {spec["key"]}
        for spec in SERVICES["secrets"].values()
        if not spec.get("optional")
    }
    assert made == expected
    gitignore = (K8S / "secrets" / ".gitignore").read_text().split()
    assert gitignore[-3:] == ["*", "!.gitignore", "!kustomization.yaml"], "never commit the files"


def test_postgres_init_is_the_compose_one():
    assert filecmp.cmp(
        K8S / "postgres" / "init-databases.sql",
        ROOT / "deploy" / "init-databases.sql",
        shallow=False,
    ), "deploy/k8s/postgres/init-databases.sql must be a copy of deploy/init-databases.sql"


# ---------------------------------------------------------------------------------------------
# values.yaml against Dagster's chart

PULL = {"Always", "IfNotPresent", "Never"}
ANY = object()  # a free-form Kubernetes object or list the chart passes on as it is
IMAGE = {"repository": str, "tag": (str, int), "pullPolicy": PULL}
K8S_CONTAINER_BITS = {
    "env": (dict, list),
    "envConfigMaps": list,
    "envSecrets": list,
    "annotations": dict,
    "nodeSelector": dict,
    "affinity": dict,
    "tolerations": list,
    "podSecurityContext": dict,
    "securityContext": dict,
    "resources": dict,
    "livenessProbe": dict,
    "readinessProbe": dict,
    "startupProbe": dict,
    "labels": dict,
    "volumeMounts": list,
    "volumes": list,
    "schedulerName": str,
}
QUEUED_COORDINATOR = {
    "maxConcurrentRuns": int,
    "tagConcurrencyLimits": list,
    "dequeueIntervalSeconds": int,
    "dequeueNumWorkers": int,
    "dequeueUseThreads": bool,
    "blockOpConcurrencyLimitedRuns": dict,
}
# The keys of Dagster's chart (helm/dagster/values.schema.json in dagster-io/dagster, the 1.x
# line) that values.yaml may set, with their types; a nested dict is a sub-object whose keys
# are closed too. A key outside these would be ignored by the chart or rejected by its schema.
CHART: dict[str, Any] = {
    "global": {
        "postgresqlSecretName": str,
        "dagsterHome": str,
        "serviceAccountName": str,
        "celeryConfigSecretName": str,
        "dagsterInstanceConfigMap": str,
    },
    "serviceAccount": {"create": bool, "name": str, "annotations": dict},
    "generatePostgresqlPasswordSecret": bool,
    "postgresql": {
        "image": IMAGE,
        "enabled": bool,
        "postgresqlHost": str,
        "postgresqlUsername": str,
        "postgresqlPassword": str,
        "postgresqlDatabase": str,
        "postgresqlParams": dict,
        "postgresqlScheme": str,
        "service": {"port": int},
    },
    "dagsterWebserver": {
        **K8S_CONTAINER_BITS,
        "replicaCount": int,
        "image": IMAGE,
        "nameOverride": str,
        "pathPrefix": str,
        "service": {"type": str, "port": int, "annotations": dict},
        "workspace": {"enabled": bool, "servers": list, "externalConfigmap": str},
        "deploymentLabels": dict,
        "enableReadOnly": bool,
        "dbStatementTimeout": int,
        "dbPoolRecycle": int,
        "logLevel": str,
        "initContainerResources": dict,
    },
    "dagster-user-deployments": {
        "enabled": bool,
        "enableSubchart": bool,
        "imagePullSecrets": list,
        "deployments": [
            {
                **K8S_CONTAINER_BITS,
                "name": str,
                "image": IMAGE,
                "dagsterApiGrpcArgs": [str],
                "codeServerArgs": [str],
                "includeConfigInLaunchedRuns": {"enabled": bool},
                "deploymentNamespace": str,
                "port": int,
                "initContainers": list,
                "sidecarContainers": list,
            }
        ],
    },
    "runLauncher": {
        "type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
        "config": {
            "k8sRunLauncher": {
                "image": IMAGE,
                "imagePullPolicy": PULL,
                "jobNamespace": str,
                "loadInclusterConfig": bool,
                "kubeconfigFile": str,
                "envConfigMaps": list,
                "envSecrets": list,
                "envVars": [str],
                "volumeMounts": list,
                "volumes": list,
                "labels": dict,
                "failPodOnRunFailure": bool,
                "resources": dict,
                "schedulerName": str,
                "securityContext": dict,
                "runK8sConfig": {
                    "containerConfig": dict,
                    "podSpecConfig": dict,
                    "podTemplateSpecMetadata": dict,
                    "jobSpecConfig": dict,
                    "jobMetadata": dict,
                },
            },
        },
    },
    "dagsterDaemon": {
        **K8S_CONTAINER_BITS,
        "enabled": bool,
        "image": IMAGE,
        "runCoordinator": {
            "enabled": bool,
            "type": {"QueuedRunCoordinator", "CustomRunCoordinator"},
            "config": {"queuedRunCoordinator": QUEUED_COORDINATOR, "customRunCoordinator": dict},
        },
        "heartbeatTolerance": int,
        "deploymentLabels": dict,
        "runMonitoring": dict,
        "runRetries": dict,
        "sensors": {"useThreads": bool, "numWorkers": int, "numSubmitWorkers": int},
        "schedules": {"useThreads": bool, "numWorkers": int, "numSubmitWorkers": int},
        "initContainerResources": dict,
    },
    "scheduler": {
        "type": {"DagsterDaemonScheduler", "CustomScheduler"},
        "config": {"daemonScheduler": dict, "customScheduler": dict},
    },
    "computeLogManager": {
        "type": {
            "NoOpComputeLogManager",
            "AzureBlobComputeLogManager",
            "GCSComputeLogManager",
            "S3ComputeLogManager",
            "CustomComputeLogManager",
        },
        "config": {
            "azureBlobComputeLogManager": dict,
            "gcsComputeLogManager": dict,
            "s3ComputeLogManager": dict,
            "customComputeLogManager": {"module": str, "class": str, "config": dict},
        },
    },
    "telemetry": {"enabled": bool},
}
# runMonitoring is free-form in the chart's schema; these are the keys its instance template reads
# (maxRuntimeSeconds: only where the chart version renders it).
RUN_MONITORING = {
    "enabled": bool,
    "startTimeoutSeconds": int,
    "cancelTimeoutSeconds": int,
    "maxResumeRunAttempts": int,
    "pollIntervalSeconds": int,
    "freeSlotsAfterRunEndSeconds": int,
    "maxRuntimeSeconds": int,
}


def _check(value: Any, schema: Any, path: str) -> list[str]:
    if schema is ANY:
        return []
    if isinstance(schema, set):
        return [] if value in schema else [f"{path}: {value!r} is not one of {sorted(schema)}"]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        errors = []
        for key, item in value.items():
            if key not in schema:
                errors.append(f"{path}.{key}: not a key of Dagster's chart here")
            else:
                errors += _check(item, schema[key], f"{path}.{key}")
        return errors
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in _check(item, schema[0], f"{path}[{i}]")]
    kinds = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(value, bool) and bool not in kinds:  # bool is an int to Python, not to Helm
        return [f"{path}: expected {'/'.join(k.__name__ for k in kinds)}, got bool"]
    if not isinstance(value, kinds):
        return [
            f"{path}: expected {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}"
        ]
    return []


def test_values_use_the_charts_keys_and_types():
    errors = _check(VALUES, CHART, "values")
    errors += _check(VALUES["dagsterDaemon"]["runMonitoring"], RUN_MONITORING, "runMonitoring")
    assert not errors, "\n".join(errors)


def _code_deployment() -> dict:
    (code,) = [
        d
        for d in VALUES["dagster-user-deployments"]["deployments"]
        if d["name"] == SERVICES["services"]["code"]["k8s"]["name"]
    ]
    return code


def test_values_run_the_code_location_the_daemon_and_k8s_runs():
    users = VALUES["dagster-user-deployments"]
    assert users["enabled"] and users["enableSubchart"]
    code = _code_deployment()
    args = code["dagsterApiGrpcArgs"]
    module = args[args.index("-m") + 1]
    assert module == "housing_assets.definitions" and importlib.util.find_spec(module)
    assert code["port"] == SERVICES["services"]["code"]["port"]
    assert code["includeConfigInLaunchedRuns"]["enabled"] is True
    assert "resources" not in code, "a code location's resources become every run's"

    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"requests", "limits"} <= set(launcher["resources"])
    threads = {e["name"]: e["value"] for e in code["env"]}["HOUSING_THREADS"]
    assert str(launcher["resources"]["limits"]["cpu"]) == threads, "threads follow the run's CPUs"

    daemon = VALUES["dagsterDaemon"]
    assert daemon["enabled"] is True
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 1
    assert daemon["runMonitoring"]["enabled"] is True
    assert daemon["sensors"]["useThreads"] and daemon["schedules"]["useThreads"]
    assert VALUES["scheduler"]["type"] == "DagsterDaemonScheduler"
    assert VALUES["telemetry"]["enabled"] is False


def test_values_name_what_deploy_k8s_makes(objects):
    postgres = VALUES["postgresql"]
    assert postgres["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False
    service = _named(objects, "Service", postgres["postgresqlHost"])
    assert service["spec"]["ports"][0]["port"] == postgres["service"]["port"]
    assert postgres["postgresqlUsername"] == postgres["postgresqlDatabase"] == "dagster"
    by_k8s = {spec["k8s"]: spec for spec in SERVICES["secrets"].values()}
    assert by_k8s[VALUES["global"]["postgresqlSecretName"]]["key"] == "postgresql-password"

    # The workspace: the code location's Service (named after the deployment) and port.
    webserver = VALUES["dagsterWebserver"]
    assert webserver["replicaCount"] == 0, "webserver.yaml runs the guarded webserver instead"
    workspace = webserver["workspace"]
    assert workspace["enabled"] and workspace["servers"] == []
    configmap = _named(objects, "ConfigMap", workspace["externalConfigmap"])
    (server,) = [
        s["grpc_server"] for s in yaml.safe_load(configmap["data"]["workspace.yaml"])["load_from"]
    ]
    code = _code_deployment()
    assert (server["host"], server["port"], server["location_name"]) == (
        code["name"],
        code["port"],
        "housing_assets",  # as in deploy/workspace.yaml (compose)
    )
    compose_workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    assert compose_workspace["load_from"][0]["grpc_server"]["location_name"] == "housing_assets"

    # Volumes: every claim exists; every Secret is one services.yaml knows.
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for volume in code["volumes"] + VALUES["dagsterDaemon"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
        for name, _key in _volume_secrets(volume):
            assert name in by_k8s, f"values.yaml mounts Secret {name}, unknown to services.yaml"
    mounts = {m["name"] for m in code["volumeMounts"]}
    assert mounts == {v["name"] for v in code["volumes"]}

    # Compute logs where the runs write them and the webserver reads them.
    custom = VALUES["computeLogManager"]["config"]["customComputeLogManager"]
    base_dir = custom["config"]["base_dir"]
    assert any(m["mountPath"] == base_dir for m in code["volumeMounts"])
    web = _pod_spec(_named(objects, "Deployment", "webserver"))
    assert any(m["mountPath"] == base_dir for m in web["containers"][0]["volumeMounts"])
    instance_mount = [m for m in web["containers"][0]["volumeMounts"] if m["name"] == "instance"]
    assert instance_mount[0]["mountPath"] == f"{VALUES['global']['dagsterHome']}/dagster.yaml"
    assert web["serviceAccountName"] == VALUES["global"]["serviceAccountName"]


# ---------------------------------------------------------------------------------------------
# One list of the environment: services.yaml against compose and Kubernetes


def _secret_maps() -> tuple[dict[str, str], dict[str, str]]:
    """Kubernetes Secret name -> compose name, and env key -> compose name (Secrets as env)."""
    by_k8s = {spec["k8s"]: name for name, spec in SERVICES["secrets"].items()}
    as_env = {spec["key"]: name for name, spec in SERVICES["secrets"].items() if spec.get("as_env")}
    return by_k8s, as_env


def _expected(service: str, platform: str) -> tuple[set[str], set[str]]:
    spec = SERVICES["services"][service]
    env = set(spec["env"])
    if spec.get("dagster_instance"):
        env |= set(SERVICES["dagster_instance"][platform]["env"])
    only = spec.get("only", {}).get(platform, {})
    return env | set(only.get("env", [])), set(spec["secrets"]) | set(only.get("secrets", []))


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _compose_env(service: dict) -> set[str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0] for item in env}
    return set(env)


def _compose_secrets(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def _on(platform: str) -> list[str]:
    return sorted(
        name
        for name, spec in SERVICES["services"].items()
        if platform in spec.get("platforms", ("compose", "k8s"))
    )


def test_services_yaml_lists_every_compose_service():
    compose = set(_compose())
    assert compose == set(_on("compose")), "a compose service services.yaml does not list"
    assert set(SERVICES["services"]) - compose <= set(_on("k8s"))


@pytest.mark.parametrize("service", _on("compose"))
def test_compose_gives_each_service_what_services_yaml_lists(service):
    compose = _compose()
    env, secrets = _expected(service, "compose")
    assert _compose_env(compose[service]) == env
    assert _compose_secrets(compose[service]) == secrets
    environment = compose[service].get("environment") or {}
    for name, value in environment.items():  # NAME_FILE and key paths name a secret it has
        if str(value).startswith("/run/secrets/"):
            assert str(value).removeprefix("/run/secrets/") in secrets, f"{name}={value}"


def test_compose_declares_the_secrets_services_yaml_names():
    declared = set(yaml.safe_load(COMPOSE.read_text()).get("secrets", {}))
    files = {name for name, spec in SERVICES["secrets"].items() if not spec.get("as_env")}
    assert declared == files


def _volume_secrets(volume: dict) -> list[tuple[str, str | None]]:
    """(Secret name, key) pairs a pod volume mounts."""
    found = []
    if "secret" in volume:
        items = volume["secret"].get("items") or [{"key": None}]
        found += [(volume["secret"]["secretName"], i["key"]) for i in items]
    for source in volume.get("projected", {}).get("sources", []):
        if "secret" in source:
            items = source["secret"].get("items") or [{"key": None}]
            found += [(source["secret"]["name"], i["key"]) for i in items]
    return found


def _container_environment(
    container: dict, volumes: list[dict], objects: list[dict], env_secrets: list[dict] = ()
) -> tuple[set[str], set[str]]:
    """The variable names and the compose names of the secrets one container receives."""
    by_k8s, as_env = _secret_maps()
    env, secrets = set(), set()
    for item in container.get("env", []):
        env.add(item["name"])
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secrets.add(by_k8s[ref["name"]])
    for source in [*container.get("envFrom", []), *({"secretRef": s} for s in env_secrets)]:
        if "configMapRef" in source:
            env |= set(_named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            name = by_k8s[source["secretRef"]["name"]]
            secrets.add(name)
            env.add(SERVICES["secrets"][name]["key"])
            assert SERVICES["secrets"][name]["key"] in as_env
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    files = set()
    for volume in volumes:
        if volume["name"] not in mounted:
            continue
        for name, key in _volume_secrets(volume):
            compose_name = by_k8s[name]
            assert key == SERVICES["secrets"][compose_name]["key"], f"Secret {name} key {key}"
            secrets.add(compose_name)
            files |= _volume_paths(volume, name)
            path = next(
                m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume["name"]
            )
            assert path == "/run/secrets", f"secrets are mounted at /run/secrets, not {path}"
    assert files <= secrets, "each Secret is mounted under its compose file name"
    for item in container.get("env", []):  # NAME_FILE and key paths name a mounted file
        value = str(item.get("value", ""))
        if value.startswith("/run/secrets/"):
            assert value.removeprefix("/run/secrets/") in files, f"{item['name']}={value}"
    return env, secrets


def _volume_paths(volume: dict, secret: str) -> set[str]:
    sources = [volume] + volume.get("projected", {}).get("sources", [])
    return {
        item["path"]
        for source in sources
        if source.get("secret", {}).get("name", source.get("secret", {}).get("secretName"))
        == secret
        for item in source["secret"].get("items", [])
    }


def _k8s_environment(service: str, objects: list[dict]) -> tuple[set[str], set[str]]:
    where = SERVICES["services"][service]["k8s"]
    secret = {VALUES["global"]["postgresqlSecretName"]}
    by_k8s, _ = _secret_maps()
    if where.get("helm") == "dagster-user-deployments":
        code = _code_deployment()
        env, secrets = _container_environment(
            {"env": code["env"], "volumeMounts": code["volumeMounts"]},
            code["volumes"],
            objects,
            code.get("envSecrets", []),
        )
        return env | CHART_INSTANCE_ENV, secrets | {by_k8s[s] for s in secret}
    if where.get("helm") == "dagsterDaemon":
        daemon = VALUES["dagsterDaemon"]
        env, secrets = _container_environment(
            {"env": daemon.get("env") or [], "volumeMounts": daemon.get("volumeMounts", [])},
            daemon.get("volumes", []),
            objects,
            daemon.get("envSecrets", []),
        )
        return env | CHART_INSTANCE_ENV, secrets | {by_k8s[s] for s in secret}
    spec = _pod_spec(_named(objects, where["kind"], where["name"]))
    (container,) = spec["containers"]
    return _container_environment(container, spec.get("volumes", []), objects)


@pytest.mark.parametrize("service", _on("k8s"))
def test_kubernetes_gives_each_service_what_services_yaml_lists(service, objects):
    env, secrets = _k8s_environment(service, objects)
    expected_env, expected_secrets = _expected(service, "k8s")
    assert env == expected_env
    assert secrets == expected_secrets


def test_every_secret_is_used_by_someone(objects):
    used = set()
    for service in _on("k8s"):
        used |= _k8s_environment(service, objects)[1]
    assert used == set(SERVICES["secrets"])


def _image_repository(image: str) -> str:
    return re.sub(r"(:[^/:]+)?(@sha256:[0-9a-f]+)?$", "", image)


def _compose_image(text: str) -> str:
    """An image as compose resolves it with nothing set: ${VAR:-default} is the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def test_one_image_everywhere(objects):
    image = SERVICES["image"]
    compose = _compose()
    for name in _on("compose"):
        expected = SERVICES["services"][name].get("image", image)
        assert _image_repository(_compose_image(compose[name]["image"])) == _image_repository(
            expected
        ), f"compose {name}: {compose[name]['image']}"
    tag = next(
        i["newTag"] for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    )
    for workload in _workloads(objects):
        for container in _pod_spec(workload)["containers"]:
            if workload["metadata"]["name"] == "postgres":
                assert container["image"] == SERVICES["services"]["postgres"]["image"]
            else:
                assert container["image"] == f"{image}:{tag}"
    for chart_image in (_code_deployment()["image"], VALUES["dagsterDaemon"]["image"]):
        assert (chart_image["repository"], str(chart_image["tag"])) == (image, str(tag))


def _compose_ports(service: dict) -> set[int]:
    ports = {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    test += " " + str(service.get("command", ""))  # the port the service listens on
    return ports | {int(p) for p in re.findall(r"(?:-p |--port |localhost:)(\d+)", test)}


@pytest.mark.parametrize(
    "service", sorted(s for s, spec in SERVICES["services"].items() if "port" in spec)
)
def test_ports_agree(service, objects):
    port = SERVICES["services"][service]["port"]
    if service != "postgres":  # the image's default port, named by the clients' URIs
        assert port in _compose_ports(_compose()[service])
    where = SERVICES["services"][service]["k8s"]
    if where.get("helm"):
        assert _code_deployment()["port"] == port
        return
    service_object = _named(objects, "Service", where["name"])
    assert [p["port"] for p in service_object["spec"]["ports"]] == [port]
    (container,) = _pod_spec(_named(objects, where["kind"], where["name"]))["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    text = " ".join(container.get("args") or container.get("command") or [])
    if service != "postgres":
        assert str(port) in text


def test_clients_name_the_same_endpoints(objects):
    """The URIs of PostgreSQL and MLflow are the Services' names and ports, as in compose."""
    compose = COMPOSE.read_text()
    rendered = yaml.safe_dump_all(objects) + yaml.safe_dump(VALUES)
    for endpoint in ("@postgres:5432/mlflow", "@postgres:5432/optuna", "http://mlflow:5000"):
        assert endpoint in compose and endpoint in rendered


# ---------------------------------------------------------------------------------------------
# Security, resources, probes


def _pod_contexts(objects: list[dict]):
    """(what, pod securityContext, containers) for every pod of deploy/k8s and values.yaml."""
    for workload in _workloads(objects):
        spec = _pod_spec(workload)
        yield workload["metadata"]["name"], spec.get("securityContext", {}), spec["containers"]
    code = _code_deployment()
    yield "code (chart)", code["podSecurityContext"], [code]
    daemon = VALUES["dagsterDaemon"]
    yield "daemon (chart)", daemon["podSecurityContext"], [daemon]
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    run_pod = launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]
    yield "each run (chart)", run_pod, [launcher]


def test_every_pod_runs_unprivileged(objects):
    errors = []
    for what, pod, containers in _pod_contexts(objects):
        if not pod.get("runAsNonRoot"):
            errors.append(f"{what}: runAsNonRoot")
        if what != "postgres" and pod.get("runAsUser") != 1000:
            errors.append(f"{what}: the image's user is uid 1000")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{what}: seccompProfile RuntimeDefault")
        for container in containers:
            context = container.get("securityContext", {})
            if context.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{what}: allowPrivilegeEscalation false")
            if context.get("capabilities", {}).get("drop") != ["ALL"]:
                errors.append(f"{what}: drop ALL capabilities")
            if context.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{what}: readOnlyRootFilesystem")
    assert not errors, "\n".join(errors)
    namespace = _named(objects, "Namespace", "housing")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_container_states_its_resources(objects):
    for what, _pod, containers in _pod_contexts(objects):
        if what == "code (chart)":
            continue  # limit-range.yaml, on purpose (a code location's resources go to runs)
        for container in containers:
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), f"{what}: {bound}"
    (limits,) = _named(objects, "LimitRange", "container-defaults")["spec"]["limits"]
    assert {"cpu", "memory"} <= set(limits["default"]) & set(limits["defaultRequest"])


def test_model_server_probes_and_command(objects):
    (container,) = _pod_spec(_named(objects, "Deployment", "model"))["containers"]
    assert container["args"][:2] == ["housing-serve", "--host"]
    assert {"0.0.0.0", "--wait", "--port"} <= set(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "tcpSocket" in container["livenessProbe"] and "startupProbe" in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"] == "model-reader"


def test_mlflow_alone_mounts_its_store(objects):
    mlflow = _named(objects, "Deployment", "mlflow")
    (container,) = _pod_spec(mlflow)["containers"]
    assert container["args"][:2] == ["mlflow", "server"]
    assert "basic-auth" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"].endswith("/deploy/mlflow-auth.ini")
    assert (
        "@" in env["MLFLOW_BACKEND_STORE_URI"]
        and ":" not in env["MLFLOW_BACKEND_STORE_URI"].split("//")[1].split("@")[0]
    ), "the URI carries no password"
    store = env["MLFLOW_ARTIFACTS_DESTINATION"]
    claim_of = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in _pod_spec(mlflow)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert any(
        store.startswith(m["mountPath"]) and claim_of.get(m["name"]) == "mlflow"
        for m in container["volumeMounts"]
    )
    others = [
        w["metadata"]["name"]
        for w in _workloads(objects)
        if w is not mlflow
        and any(
            v.get("persistentVolumeClaim", {}).get("claimName") == "mlflow"
            for v in _pod_spec(w).get("volumes", [])
        )
    ]
    chart_volumes = _code_deployment()["volumes"] + VALUES["dagsterDaemon"]["volumes"]
    assert not others and all(
        v.get("persistentVolumeClaim", {}).get("claimName") != "mlflow" for v in chart_volumes
    )


# ---------------------------------------------------------------------------------------------
# Network policies


def _roles(objects: list[dict]) -> dict[str, dict[str, str]]:
    """housing-role -> the pod labels of the pods that carry it."""
    roles = {}
    for workload in _workloads(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        roles[labels["housing-role"]] = labels
    roles["code"] = _code_deployment()["labels"]
    roles["daemon"] = VALUES["dagsterDaemon"]["labels"]
    return roles


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_let_in_only_what_is_needed(objects):
    roles = _roles(objects)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny[0]["spec"]

    for policy in policies:  # every selector names pods that exist
        spec = policy["spec"]
        if spec["podSelector"]:
            assert any(_selects(spec["podSelector"], labels) for labels in roles.values())
        for rule in spec.get("ingress", []):
            for peer in rule["from"]:
                if "namespaceSelector" not in peer:
                    assert any(_selects(peer["podSelector"], lab) for lab in roles.values())

    def allowed(role: str, port: int) -> set[str]:
        """The roles some policy lets into `role` on `port`."""
        found = set()
        for policy in policies:
            spec = policy["spec"]
            if not spec["podSelector"] or not _selects(spec["podSelector"], roles[role]):
                continue
            for rule in spec.get("ingress", []):
                if port not in [p["port"] for p in rule.get("ports", [])]:
                    continue
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:
                        found.add("clients")
                    else:
                        found |= {
                            r for r, lab in roles.items() if _selects(peer["podSelector"], lab)
                        }
        return found

    assert allowed("postgres", 5432) == {"code", "daemon", "webserver", "mlflow", "tuning-worker"}
    assert allowed("code", 4000) == {"daemon", "webserver"}
    assert allowed("mlflow", 5000) == {"code", "model", "mlflow-users"}
    assert allowed("model", 5001) == {"clients"}
    for role in NO_INGRESS_FROM_PODS:
        assert allowed(role, SERVICES["services"][role]["port"]) == set()
    egress = {
        p["spec"]["podSelector"]["matchLabels"]["housing-role"]: p["spec"].get("egress", [])
        for p in policies
        if "Egress" in p["spec"]["policyTypes"]
    }
    assert egress["postgres"] == []
    assert {"code", "daemon"}.isdisjoint(egress), "they download data and launch runs"
