"""deploy/ for Kubernetes, offline: per-stage pod resources, the Jobs dagster-k8s 0.29.27 would create
for a v2d run and step (validated against the Kubernetes schemas), the manifests, the Helm values
against the Dagster chart's values schema, and the executor switch.

The run launcher and the code location's container context are configured here the way the Dagster
chart renders them from deploy/helm/values.yaml (its templates helpers/instance/_run-launcher.tpl
and dagster-user-deployments' k8sContainerContext helper); the Jobs are then built by the same
dagster-k8s calls ``K8sRunLauncher.launch_run`` and ``K8sStepHandler.launch_step`` make, minus the
API request.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import jsonschema
import kubernetes
import kubernetes_validate
import pytest
import referencing
import yaml
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import DEFAULT_DAGSTER_ENTRY_POINT, JobPythonOrigin, RepositoryPythonOrigin
from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs
from dagster._serdes import deserialize_value
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    construct_dagster_k8s_job,
    get_job_name_from_run_id,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from packaging.requirements import Requirement

from v2d_core.errors import ConfigError
from v2d_dagster.factory import build_definitions
from v2d_dagster.k8s import stage_resources
from v2d_dagster.spec import load_dataset

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CHART_SCHEMA = Path(__file__).with_name("schemas") / "dagster_helm_values.schema.json"
K8S_VERSION = "1.30"  # the oldest Kubernetes v2d's deploy/README.md asks for
NAMESPACE = "v2d"
RELEASE = "dagster"  # helm upgrade --install dagster ...: the chart's fullname is the release name
USER_DEPLOYMENTS = f"{RELEASE}-dagster-user-deployments"  # the subchart's fullname
IMAGE = "registry.example.com/v2d:2026-11-24.1"
STEP = "clips__download"


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips.csv").write_text("url,caption\nhttp://127.0.0.1:9/a.mp4,a\n")
    spec = {
        "name": "clips",
        "url_list": "clips.csv",
        "input_format": "csv",
        "caption_col": "caption",
        "output_root": "s3://bucket/clips",
        "stages": {
            "download": {"output_format": "webdataset", "processes_count": 2, "thread_count": 16},
            "downsample": {"k8s_resources": {"requests": {"cpu": 8}, "limits": {"memory": "16Gi"}}},
            "optical_flow": {},
        },
    }
    (folder / "clips.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def datasets(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "datasets")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def k8s_dict(model: Any) -> dict[str, Any]:
    """A kubernetes client model as the JSON the API server receives."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(model)


# -- per-stage resources ----------------------------------------------------------------------


def test_stage_defaults_give_downsample_cpu_and_optical_flow_memory() -> None:
    download, downsample, flow = (stage_resources(s) for s in ("download", "downsample", "optical_flow"))
    assert int(downsample["requests"]["cpu"]) > int(download["requests"]["cpu"])
    assert flow["requests"]["memory"] == "8Gi" and download["requests"]["memory"] == "2Gi"
    assert "cpu" not in download.get("limits", {})  # a CPU limit would only throttle ffmpeg


def test_dataset_file_overrides_one_quantity_and_keeps_the_rest(datasets: Path) -> None:
    downsample = load_dataset(datasets / "clips.yaml").stages["downsample"]
    assert downsample.resources == {
        "requests": {"cpu": "8", "memory": "4Gi"},
        "limits": {"memory": "16Gi"},
    }


@pytest.mark.parametrize(
    ("k8s_resources", "message"),
    [
        ({"requests": {"cpu": "two"}}, "k8s_resources.requests.cpu must be a Kubernetes quantity"),
        ({"request": {"cpu": "2"}}, "takes requests and limits, not request"),
        ({"limits": "4Gi"}, "k8s_resources.limits must map a resource to a quantity"),
    ],
)
def test_bad_k8s_resources_fail_at_load_naming_the_key(
    datasets: Path, k8s_resources: dict[str, Any], message: str
) -> None:
    path = datasets / "clips.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["stages"]["download"]["k8s_resources"] = k8s_resources
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message) as error:
        load_dataset(path)
    assert str(path) in str(error.value)


def test_each_stage_op_carries_its_dagster_k8s_config(datasets: Path) -> None:
    defs = build_definitions(str(datasets))
    for stage in ("download", "downsample", "optical_flow"):
        tags = defs.resolve_assets_def(dg.AssetKey(["clips", stage])).op.tags
        parsed = get_user_defined_k8s_config(tags)  # dagster-k8s's own parser and schema check
        expected = load_dataset(datasets / "clips.yaml").stages[stage].resources
        assert parsed.container_config == {"resources": expected}, stage


# -- the Jobs dagster-k8s creates -------------------------------------------------------------


def chart_run_launcher(values: dict[str, Any], kubeconfig: Path) -> K8sRunLauncher:
    """The K8sRunLauncher the chart's instance ConfigMap configures from ``values``; the kubeconfig
    replaces in-cluster config (nothing here talks to an API server)."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "job_namespace": NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [
            f"{RELEASE}-pipeline-env",
            *(m["name"] for m in launcher.get("envConfigMaps", [])),
        ],
        "env_secrets": [s["name"] for s in launcher.get("envSecrets", [])],
        "resources": launcher["resources"],
        "security_context": launcher["securityContext"],
        "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
    }
    processed = process_config(K8sRunLauncher.config_type(), config)
    assert processed.success, processed.errors
    return K8sRunLauncher.from_config_value(None, processed.value)


def chart_container_context(values: dict[str, Any]) -> dict[str, Any]:
    """What ``includeConfigInLaunchedRuns`` gives every run of the v2d code location."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    return {
        "k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [f"{USER_DEPLOYMENTS}-{deployment['name']}-user-env"],
            "env_secrets": [secret["name"] for secret in deployment["envSecrets"]],
            "namespace": NAMESPACE,
            "service_account_name": f"{USER_DEPLOYMENTS}-user-deployments",
        }
    }


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def download_run(values: dict[str, Any], datasets: Path) -> dg.DagsterRun:
    """A run of ``clips/download`` as the code location of deploy/helm/values.yaml creates it."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert f"{deployment['image']['repository']}:{deployment['image']['tag']}" == IMAGE
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    origin = JobPythonOrigin(
        "clips_download",
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer(module, "defs", "/opt/v2d"),
            container_image=IMAGE,
            entry_point=DEFAULT_DAGSTER_ENTRY_POINT,  # what `dagster api grpc` puts in its origins
            container_context=chart_container_context(values),
        ),
    )
    tags = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00007"}
    return dg.DagsterRun(
        job_name="clips_download",
        run_id="5c3f6a0e-1d2b-4c8e-9f00-0123456789ab",
        job_code_origin=origin,
        tags=tags,
    )


def validate_k8s(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def test_step_job_has_the_stage_resources_image_secrets_and_step_command(
    values: dict[str, Any], kubeconfig: Path, datasets: Path, download_run: dg.DagsterRun
) -> None:
    launcher = chart_run_launcher(values, kubeconfig)
    step_tags = (
        build_definitions(str(datasets)).resolve_assets_def(dg.AssetKey(["clips", "download"])).op.tags
    )
    # K8sStepHandler._get_container_context, then launch_step:
    context = K8sContainerContext.create_for_run(download_run, launcher, include_run_tags=False)
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    job_config = context.get_k8s_job_config(None, launcher)
    assert job_config.job_image is None  # the step pod takes the code location's image
    job_config = job_config.with_image(download_run.job_code_origin.repository_origin.container_image)
    step_args = ExecuteStepArgs(download_run.job_code_origin, download_run.run_id, [STEP])
    name = f"dagster-step-{get_k8s_job_name(download_run.run_id, STEP)}"
    job = k8s_dict(
        construct_dagster_k8s_job(
            job_config=job_config,
            args=step_args.get_command_args(skip_serialized_namedtuple=True),
            job_name=name,
            pod_name=name,
            component="step_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={
                "dagster/job": "clips_download",
                "dagster/op": STEP,
                "dagster/run-id": download_run.run_id,
            },
            env_vars=[*step_args.get_command_env(), {"name": "DAGSTER_RUN_STEP_KEY", "value": STEP}],
        )
    )
    validate_k8s(job)

    container = container_of(job)
    assert container["resources"] == stage_resources("download")
    assert container["image"] == IMAGE
    assert container["args"] == ["dagster", "api", "execute_step"]
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
    env = {item["name"]: item for item in container["env"]}
    compressed = env["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]["value"]
    executed = deserialize_value(zlib.decompress(base64.b64decode(compressed)).decode(), ExecuteStepArgs)
    assert executed.step_keys_to_execute == [STEP]
    assert executed.job_origin.repository_origin.code_pointer.module == "v2d_dagster.definitions"
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    sources = container["envFrom"]
    assert {"secretRef": {"name": "v2d-object-storage"}} in sources
    # V2D_EXECUTOR and V2D_DATASETS_DIR come from the code location's env ConfigMap
    assert {"configMapRef": {"name": f"{USER_DEPLOYMENTS}-v2d-user-env"}} in sources
    assert job["metadata"]["name"] == name


def test_run_job_runs_the_run_in_a_small_pod_of_the_same_image(
    values: dict[str, Any], kubeconfig: Path, download_run: dg.DagsterRun
) -> None:
    launcher = chart_run_launcher(values, kubeconfig)
    # K8sRunLauncher.launch_run / _launch_k8s_job_with_args:
    context = launcher.get_container_context_for_run(download_run)
    job_config = context.get_k8s_job_config(
        job_image=download_run.job_code_origin.repository_origin.container_image, run_launcher=launcher
    )
    args = ExecuteRunArgs(download_run.job_code_origin, download_run.run_id, None, True).get_command_args()
    name = get_job_name_from_run_id(download_run.run_id)
    job = k8s_dict(
        construct_dagster_k8s_job(
            job_config=job_config,
            args=args,
            job_name=name,
            pod_name=name,
            component="run_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": "clips_download", "dagster/run-id": download_run.run_id},
            env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "clips_download"}],
        )
    )
    validate_k8s(job)
    container = container_of(job)
    assert container["image"] == IMAGE
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    assert container["resources"] == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert {"secretRef": {"name": "v2d-object-storage"}} in container["envFrom"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"].endswith("user-deployments")


def test_a_job_kubernetes_would_reject_fails_validation() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "resource": {}}]}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="resource"):
        validate_k8s(job)


@pytest.mark.parametrize("path", sorted((DEPLOY / "manifests").glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for document in documents:
        validate_k8s(document)
        assert document["metadata"]["namespace"] == NAMESPACE


def test_values_name_the_secrets_the_manifests_create(values: dict[str, Any]) -> None:
    secrets = {
        doc["metadata"]["name"]: doc
        for path in (DEPLOY / "manifests").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Secret"
    }
    assert "postgresql-password" in secrets[values["global"]["postgresqlSecretName"]]["stringData"]
    for ref in values["dagster-user-deployments"]["deployments"][0]["envSecrets"]:
        assert ref["name"] in secrets


# -- Helm values against the chart's values schema ---------------------------------------------


def overlay_schema(schema: Any) -> Any:
    """The chart's schema for a values *overlay*: nothing required (the chart's values.yaml has the
    rest), and no key an object's properties do not list (unless the object allows extras)."""
    if isinstance(schema, list):
        return [overlay_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: overlay_schema(value) for key, value in schema.items() if key != "required"}
    if "properties" in schema and "additionalProperties" not in schema:
        strict["additionalProperties"] = False
    return strict


def chart_validator() -> jsonschema.Draft202012Validator:
    schema = overlay_schema(json.loads(CHART_SCHEMA.read_text()))
    # DagsterHelmValues allows unknown top-level keys only as the old `dagit` alias; we use none.
    schema["additionalProperties"] = False
    definitions = json.loads(
        (
            Path(kubernetes_validate.__file__).parent
            / "kubernetes-json-schema"
            / f"v{K8S_VERSION}.0-local-strict"
            / "_definitions.json"
        ).read_text()
    )
    registry = referencing.Registry().with_resource(
        definitions["$id"], referencing.jsonschema.DRAFT202012.create_resource(definitions)
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_helm_values_use_only_keys_the_chart_knows(values: dict[str, Any]) -> None:
    errors = sorted(chart_validator().iter_errors(values), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0
    assert values["dagster-user-deployments"]["deployments"][0]["env"]["V2D_EXECUTOR"] == "k8s"


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (["runLauncher", "config", "k8sRunLauncher"], "resource"),
        (["dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"], "maxConcurrentRun"),
        (["dagster-user-deployments", "deployments", 0], "envSecret"),
        (["dagster-user-deployments", "deployments", 0, "securityContext"], "runAsNonroot"),
        ([], "runlauncher"),
    ],
)
def test_a_misspelt_helm_key_is_caught(values: dict[str, Any], path: list[Any], key: str) -> None:
    broken = copy.deepcopy(values)
    target = broken
    for part in path:
        target = target[part]
    target[key] = 1
    messages = [error.message for error in chart_validator().iter_errors(broken)]
    assert any(repr(key) in message for message in messages), messages


# -- the executor switch ----------------------------------------------------------------------

EXECUTOR_PROBE = (
    "from v2d_dagster.definitions import defs; "
    "print(defs.resolve_job_def('clips_download').executor_def.name)"
)


def executor_of_loaded_definitions(datasets: Path, executor: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "V2D_EXECUTOR"}
    env.update(
        {
            "V2D_DATASETS_DIR": str(datasets),
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        }
    )
    if executor is not None:
        env["V2D_EXECUTOR"] = executor
    return subprocess.run(
        [sys.executable, "-c", EXECUTOR_PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(("executor", "name"), [(None, "in_process"), ("k8s", "k8s")])
def test_executor_is_chosen_by_environment(datasets: Path, executor: str | None, name: str) -> None:
    done = executor_of_loaded_definitions(datasets, executor)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == name


def test_unknown_executor_is_a_clear_error(datasets: Path) -> None:
    done = executor_of_loaded_definitions(datasets, "celery")
    assert done.returncode != 0
    assert (
        "V2D_EXECUTOR='celery' is not an executor; choose from in_process, multiprocess, k8s" in done.stderr
    )


# -- the image's dependency set -----------------------------------------------------------------


def load_script(path: Path) -> ModuleType:
    """A script of deploy/ imported as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_requirements = load_script(DEPLOY / "image_requirements.py")


@pytest.fixture(scope="module")
def image_set() -> dict[str, Any]:
    return image_requirements.image_distributions()


def test_every_package_of_the_image_is_pinned(image_set: dict[str, Any]) -> None:
    pinned = image_requirements.read_constraints()
    wanted = image_requirements.pins(image_set)
    missing = sorted(set(wanted) - set(pinned))
    assert not missing, f"not in deploy/constraints.txt (python deploy/image_requirements.py pin): {missing}"
    # the packages v2d names itself are pinned at the version the tests run (transitive ones may
    # drift on a shared machine; the image still gets their pins)
    direct = {Requirement(text).name.lower() for text in image_set["v2d"].requires or []}
    differ = {
        name: (pinned[name], wanted[name]) for name in direct & set(wanted) if pinned[name] != wanted[name]
    }
    assert not differ, f"pinned vs tested: {differ}"
    # what the instance config and the pods need is in the set; the GUI build of OpenCV is not
    needed = {"dagster-postgres", "psycopg2-binary", "dagster-k8s", "s3fs", "opencv-python-headless"}
    assert needed <= set(wanted)
    assert "opencv-python" not in wanted


def test_dockerfile_installs_the_image_extra_under_the_constraints() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/constraints.txt ./deploy/constraints.txt" in dockerfile
    assert 'pip install -c deploy/constraints.txt ".[image]"' in dockerfile
    for replaced, replacement in image_requirements.REPLACED.items():
        assert f"pip uninstall -y {replaced}" in dockerfile
        assert f"--force-reinstall -c deploy/constraints.txt {replacement}" in dockerfile
    dataset_dir = values_env()["V2D_DATASETS_DIR"]
    assert f"V2D_DATASETS_DIR={dataset_dir}" in dockerfile
    assert "COPY v2d_dagster ./v2d_dagster" in dockerfile and dataset_dir == "/opt/v2d/v2d_dagster/defs"


def values_env() -> dict[str, str]:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    return dict(values["dagster-user-deployments"]["deployments"][0]["env"])


def chart_instance_config(values: dict[str, Any]) -> dict[str, Any]:
    """The instance the chart's ConfigMap gives every pod (helpers/instance/*.tpl), from ``values``."""
    postgres = values["postgresql"]
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": postgres["postgresqlHost"],
                    "port": postgres["service"]["port"],
                    "username": postgres["postgresqlUsername"],
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "db_name": postgres["postgresqlDatabase"],
                }
            }
        },
        "run_launcher": {"module": "dagster_k8s", "class": values["runLauncher"]["type"]},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": values["dagsterDaemon"]["runCoordinator"]["type"],
        },
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
    }


def pod_commands(download_run: dg.DagsterRun) -> list[list[str]]:
    """The container command lines of the run pod and the step pod, as dagster-k8s renders them."""
    run_args = ExecuteRunArgs(download_run.job_code_origin, download_run.run_id, None, True)
    step_args = ExecuteStepArgs(download_run.job_code_origin, download_run.run_id, [STEP])
    return [run_args.get_command_args(), step_args.get_command_args(skip_serialized_namedtuple=True)]


def probe_image_venv(
    tmp_path: Path, distributions: dict[str, Any], instance: dict[str, Any], commands: list[list[str]]
) -> subprocess.CompletedProcess[str]:
    """Build a venv of exactly ``distributions`` and probe, in it, what ``instance`` and ``commands`` load."""
    python = image_requirements.image_venv(tmp_path / "venv", distributions)
    datasets = write_dataset(tmp_path / "datasets")
    request = {
        "instance": instance,
        "commands": commands,
        "env": {**values_env(), "V2D_DATASETS_DIR": str(datasets)},
        "code_module": "v2d_dagster.definitions",
        "filesystems": ["s3"],
        "modules": ["cv2", "av", "scenedetect"],
    }
    (tmp_path / "probe.json").write_text(json.dumps(request))
    script = DEPLOY / "image_requirements.py"
    return subprocess.run(
        [str(python), "-I", str(script), "probe", str(tmp_path / "probe.json")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("instance_file", ["chart", "dagster-postgres.yaml"])
def test_image_venv_loads_what_the_instance_config_and_pod_commands_name(
    tmp_path: Path,
    values: dict[str, Any],
    kubeconfig: Path,
    download_run: dg.DagsterRun,
    image_set: dict[str, Any],
    instance_file: str,
) -> None:
    commands = pod_commands(download_run)
    assert [command[:3] for command in commands] == [
        ["dagster", "api", "execute_run"],
        ["dagster", "api", "execute_step"],
    ]
    instance = (
        chart_instance_config(values)
        if instance_file == "chart"
        else yaml.safe_load((DEPLOY / instance_file).read_text())
    )
    done = probe_image_venv(tmp_path, image_set, instance, commands)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_image_venv_without_dagster_postgres_fails_the_probe(
    tmp_path: Path,
    values: dict[str, Any],
    kubeconfig: Path,
    download_run: dg.DagsterRun,
    image_set: dict[str, Any],
) -> None:
    without = {name: dist for name, dist in image_set.items() if name != "dagster-postgres"}
    done = probe_image_venv(tmp_path, without, chart_instance_config(values), pod_commands(download_run))
    assert done.returncode == 1
    assert "instance config: dagster_postgres.PostgresRunStorage: ModuleNotFoundError" in done.stdout
    assert "No module named 'dagster_postgres'" in done.stdout
