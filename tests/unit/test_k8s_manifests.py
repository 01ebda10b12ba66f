"""The Kubernetes manifests (deploy/k8s) against the code they run.

Each kustomization is rendered by `kubectl kustomize`; where kubectl is absent, a YAML walk of
the kustomization's resources, patches and generators stands in for it (and says so). Then:
every `OCR_GATEWAY_*` name is a setting, with a value the setting accepts; every container
runs a real `ocr-gateway` command; every probe asks a route the app serves; the KEDA
ScaledObject reads the pages queue in `http` mode; the Secrets' keys that are used exist.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ocr_gateway import cli
from ocr_gateway.app import create_app
from ocr_gateway.core.settings import Settings
from tests.support.routes import served_routes

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
KUSTOMIZATIONS = [BASE, OVERLAY]
ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))
SETTING_NAMES = {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}
# Variables that are not the gateway's settings but read by a library it runs.
OTHER_ENV = {"ORT_DISABLE_TELEMETRY"}  # onnxruntime's telemetry off (DESIGN.md)
WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
SECRET = "<from a Secret>"

Manifest = dict[str, Any]


def kustomize(path: Path) -> list[Manifest]:
    """What `kubectl apply -k path` would send, or the YAML walk's reading without kubectl."""
    if shutil.which("kubectl") is None:
        warnings.warn(
            f"kubectl is absent: checking {path.relative_to(ROOT)} by a YAML walk of its "
            "resources, patches and generators instead of kustomize's own rendering",
            stacklevel=2,
        )
        return walk(path)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def walk(path: Path) -> list[Manifest]:
    """Every document the kustomization names: resources (recursively), with the strategic-merge
    patches merged into the document they name (lists by `name`), and generated ConfigMaps and
    Secrets. JSON6902 patches change values, not names, and are left out."""
    spec = yaml.safe_load((path / "kustomization.yaml").read_text())
    found: list[Manifest] = []
    for resource in spec.get("resources", []):
        target = path / resource
        if target.is_dir():
            found += walk(target)
        else:
            found += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for patch in spec.get("patches", []):
        text = (path / patch["path"]).read_text() if "path" in patch else patch["patch"]
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict):
                target = named(found, doc["kind"], doc["metadata"]["name"])
                target.update(merged(target, doc))
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in spec.get(key, []):
            data = dict(line.split("=", 1) for line in generator.get("literals", []))
            for env_file in generator.get("envs", []):
                for line in (path / env_file).read_text().splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        name, _, value = line.partition("=")
                        data[name.strip()] = value
            found.append({"kind": kind, "metadata": {"name": generator["name"]}, "data": data})
    return found


def merged(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for these manifests: maps key by key, lists of
    maps item by item on `name`, anything else replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: merged(base.get(k), v) for k, v in patch.items()}}
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in patch)
    ):
        by_name = {item["name"]: item for item in base}
        result = [merged(by_name.get(item["name"]), item) for item in patch]
        patched = {item["name"] for item in patch}
        return result + [item for item in base if item["name"] not in patched]
    return patch


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: p.name)
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return kustomize(request.param)


@pytest.fixture(scope="module")
def overlay() -> list[Manifest]:
    return kustomize(OVERLAY)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc.get("kind") == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [doc for doc in of_kind(manifests, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def containers(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, container) for every container and init container of every workload."""
    for doc in manifests:
        if doc.get("kind") in WORKLOADS:
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                yield doc, container


def environment(manifests: list[Manifest], container: Manifest) -> dict[str, str]:
    """The container's variables: its ConfigMaps' keys, then `env`, a Secret's value marked."""
    variables: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = named(manifests, "ConfigMap", source["configMapRef"]["name"])
            variables.update({k: str(v) for k, v in config.get("data", {}).items()})
    for variable in container.get("env", []):
        variables[variable["name"]] = str(variable["value"]) if "value" in variable else SECRET
    return variables


def argv(container: Manifest) -> list[str]:
    return [str(part) for part in container.get("command", []) + container.get("args", [])]


def workload_running(manifests: list[Manifest], subcommand: str) -> tuple[Manifest, Manifest]:
    matches = [(w, c) for w, c in containers(manifests) if argv(c)[1:2] == [subcommand]]
    assert len(matches) == 1, f"`ocr-gateway {subcommand}`: {len(matches)} containers"
    return matches[0]


def test_every_env_name_is_a_setting_with_a_valid_value(manifests: list[Manifest]) -> None:
    names: set[str] = set()
    for doc in of_kind(manifests, "ConfigMap"):
        names |= set(doc.get("data", {}))
    for _, container in containers(manifests):
        names |= {variable["name"] for variable in container.get("env", [])}
        names |= set(environment(manifests, container))
    assert names, "no variables found: the walk or the rendering read nothing"
    unknown = sorted(n for n in names if n not in SETTING_NAMES and n not in OTHER_ENV)
    assert unknown == [], f"not settings of core/settings.py: {unknown}"
    for _, container in containers(manifests):
        values = {
            SETTING_NAMES[name]: value
            for name, value in environment(manifests, container).items()
            if name in SETTING_NAMES and value != SECRET
        }
        Settings.model_validate(values)  # raises if a value is refused


def test_every_container_runs_an_ocr_gateway_command(
    manifests: list[Manifest], capsys: pytest.CaptureFixture[str]
) -> None:
    commands = set()
    for workload, container in containers(manifests):
        command = argv(container)
        where = f"{workload['kind']} {workload['metadata']['name']}/{container['name']}"
        assert command[:1] == ["ocr-gateway"], f"{where} runs {command}"
        # The CLI's own parser: `--help` exits 0 after the arguments before it parsed, and 2
        # on an unknown command or option.
        with pytest.raises(SystemExit) as parsed:
            cli.main([*command[1:], "--help"])
        assert parsed.value.code == 0, f"{where}: {command} {capsys.readouterr().err}"
        commands.add(command[1])
    assert commands == {"migrate", "serve", "dispatch", "worker"}


def test_roles_replicas_and_the_migrations_job(manifests: list[Manifest]) -> None:
    api, _ = workload_running(manifests, "serve")
    dispatcher, _ = workload_running(manifests, "dispatch")
    migrate, _ = workload_running(manifests, "migrate")
    assert (api["kind"], api["spec"]["replicas"]) == ("Deployment", 2)
    assert (dispatcher["kind"], dispatcher["spec"]["replicas"]) == ("Deployment", 2)
    assert migrate["kind"] == "Job"
    worker, _ = workload_running(manifests, "worker")
    assert worker["kind"] == "Deployment"


def test_probes_ask_routes_the_app_serves(manifests: list[Manifest]) -> None:
    served = {
        r.path for r in served_routes(create_app(Settings(_env_file=None))) if r.method == "GET"
    }
    probes = 0
    for _, container in containers(manifests):
        ports = {p.get("name") for p in container.get("ports", [])} | {
            p["containerPort"] for p in container.get("ports", [])
        }
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            http = container.get(kind, {}).get("httpGet")
            if http:
                probes += 1
                assert http["path"] in served, f"{container['name']} {kind}: {http['path']}"
                assert http["port"] in ports
    assert probes >= 2
    _, api = workload_running(manifests, "serve")
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    api_ports = {p.get("name") for p in api["ports"]} | {p["containerPort"] for p in api["ports"]}
    serve = argv(api)
    assert int(serve[serve.index("--port") + 1]) in api_ports
    services = of_kind(manifests, "Service")
    assert services and all(
        p["targetPort"] in api_ports for s in services for p in s["spec"]["ports"]
    )


def test_the_workers_scale_on_the_pages_queue_length_over_http(manifests: list[Manifest]) -> None:
    (scaled,) = of_kind(manifests, "ScaledObject")
    worker, container = workload_running(manifests, "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    metadata = trigger["metadata"]
    # http: the management API's count includes the pages workers hold unacked.
    assert metadata["protocol"] == "http"
    assert metadata["mode"] == "QueueLength"
    assert int(metadata["value"]) >= 1
    pages_queue = environment(manifests, container).get(
        "OCR_GATEWAY_PAGES_QUEUE", Settings.model_fields["pages_queue"].default
    )
    assert metadata["queueName"] == pages_queue
    auth = named(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"host"}
    assert "host" not in metadata, "credentials belong in the Secret"


def test_metrics_ports_are_the_ones_the_processes_listen_on(manifests: list[Manifest]) -> None:
    """The dispatcher's and the worker's /metrics listen off the loopback, on a port the pod
    declares (the API's is on its own HTTP port)."""
    for subcommand, setting in (
        ("dispatch", "dispatch_metrics_port"),
        ("worker", "worker_metrics_port"),
    ):
        _, container = workload_running(manifests, subcommand)
        env = environment(manifests, container)
        settings = Settings.model_validate(
            {SETTING_NAMES[k]: v for k, v in env.items() if k in SETTING_NAMES and v != SECRET}
        )
        assert settings.metrics_host == "0.0.0.0", subcommand
        port = getattr(settings, setting)
        assert port > 0
        declared = {
            p["containerPort"] for p in container.get("ports", []) if p.get("name") == "metrics"
        }
        assert declared == {port}, subcommand


def test_secrets_and_storage_are_wired(manifests: list[Manifest]) -> None:
    _, api = workload_running(manifests, "serve")
    env = environment(manifests, api)
    # Off the loopback the API refuses to start without an admin key, and with open clients
    # unless that is said: the key comes from a Secret, clients need keys.
    assert "0.0.0.0" in argv(api)
    for name in (
        "OCR_GATEWAY_ADMIN_API_KEY",
        "OCR_GATEWAY_DATABASE_URL",
        "OCR_GATEWAY_RABBITMQ_URL",
    ):
        assert env.get(name) == SECRET, name
    assert env.get("OCR_GATEWAY_CLIENT_AUTH") == "api_key" or env.get(
        "OCR_GATEWAY_ALLOW_OPEN_CLIENTS", ""
    ).lower() in ("1", "true")
    (claim,) = of_kind(manifests, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for subcommand in ("serve", "dispatch"):
        workload, container = workload_running(manifests, subcommand)
        volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in workload["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        files_dir = environment(manifests, container)["OCR_GATEWAY_FILES_DIR"]
        mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounted[files_dir]] == claim["metadata"]["name"], subcommand


def test_the_overlay_makes_every_secret_key_used(overlay: list[Manifest]) -> None:
    secrets = {doc["metadata"]["name"]: doc for doc in of_kind(overlay, "Secret")}
    used: set[tuple[str, str]] = set()
    for _, container in containers(overlay):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                used.add((ref["name"], ref["key"]))
    for auth in of_kind(overlay, "TriggerAuthentication"):
        used |= {(ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert len(used) >= 4
    for name, key in used:
        secret = secrets[name]
        assert key in {**secret.get("data", {}), **secret.get("stringData", {})}, (name, key)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is absent")
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_the_walk_finds_what_kustomize_renders(path: Path) -> None:
    """The fallback reads the same variables and commands as kustomize, so it checks the same."""
    rendered, walked = kustomize(path), walk(path)

    def summary(manifests: list[Manifest]) -> tuple[set[str], set[tuple[str, ...]]]:
        names = {v["name"] for _, c in containers(manifests) for v in c.get("env", [])}
        names |= {k for doc in of_kind(manifests, "ConfigMap") for k in doc.get("data", {})}
        return names, {tuple(argv(c)) for _, c in containers(manifests)}

    assert summary(walked) == summary(rendered)
