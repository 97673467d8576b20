"""Issue 10, acceptance 2: every YAML under deploy/ parses, the Kubernetes manifests validate against
the Kubernetes schemas, and the files agree with each other and with the registry.

The validator is kubernetes-validate (PyPI, in the test extras): it carries the OpenAPI-derived JSON
schemas of each Kubernetes release inside the wheel, so it runs offline; strict mode rejects unknown
fields (a misspelt `readinesProbe` fails). Beyond the schemas: the probes, security context and
volumes the issue asks for, references between the manifests, every REGISTRY_* name being a real
option, and the configuration files loading with registry.config.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import kubernetes_validate
import pytest
import yaml

from registry.config import options
from registry.settings import load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
IMAGE_UID = int(re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
OPTION_ENV = {spec.env for spec in options()} | {"REGISTRY_CONFIG"}


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _documents(path):
            if doc.get("kind") != "Kustomization":
                yield path, doc


def _by_kind(kind: str, path: Path | None = None) -> list[dict[str, Any]]:
    return [doc for p, doc in _manifests() if doc["kind"] == kind and (path is None or p == path)]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


DEPLOYMENTS = {path.name: path for path in (K8S / "deployment.yaml", K8S / "deployment.scale.yaml")}


def _deployment(name: str) -> dict[str, Any]:
    (deployment,) = _by_kind("Deployment", DEPLOYMENTS[name])
    return deployment


# -- parsing ------------------------------------------------------------------------------------

def test_there_is_yaml_to_check():
    names = {p.relative_to(DEPLOY).as_posix() for p in _yaml_files()}
    assert {"compose.yaml", "compose.scale.yaml", "registry.scale.yaml", "k8s/deployment.yaml"} <= names


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_parses(path: Path):
    documents = _documents(path)
    assert documents and all(isinstance(doc, dict) for doc in documents)


def test_mirror_client_files_parse():
    assert "registry-mirrors" in json.loads((DEPLOY / "mirror" / "daemon.json").read_text())
    assert "host" in tomllib.loads((DEPLOY / "mirror" / "hosts.toml").read_text())
    assert tomllib.loads((DEPLOY / "mirror" / "registries.conf").read_text())["registry"]


# -- Kubernetes schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(version: str):
    checked = []
    for path, doc in _manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc}", pytrace=False)
        checked.append(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "Ingress"} <= set(checked)


def test_the_validator_rejects_a_misspelt_field():
    deployment = _deployment("deployment.yaml")
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


# -- what the issue asks of the Deployment ------------------------------------------------------

@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_probes_security_and_resources(name: str):
    deployment = _deployment(name)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["timeoutSeconds"] >= 3, "/readyz may take its 2 s check timeout"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert pod["enableServiceLinks"] is False, "service links put REGISTRY_* variables into the environment"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= set(mounts), "a read-only root needs writable /data and /tmp"
    volumes = {v["name"] for v in pod["volumes"]}
    assert set(mounts.values()) <= volumes


def test_embedded_mode_has_one_writer_on_its_claim():
    deployment = _deployment("deployment.yaml")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {pvc["metadata"]["name"] for pvc in _by_kind("PersistentVolumeClaim")}


# -- references between the files ---------------------------------------------------------------

def test_labels_selectors_and_ports_line_up():
    (service,) = _by_kind("Service")
    for name in DEPLOYMENTS:
        deployment = _deployment(name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
        port_names = {port["name"] for port in _container(deployment)["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert _container(deployment)[probe]["httpGet"]["port"] in port_names
    (ingress,) = _by_kind("Ingress")
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"] and backend["port"]["name"] in service_ports
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"


def test_kustomization_lists_existing_files_and_generates_the_auth_secret():
    (kustomization,) = _documents(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    generated = {secret["name"] for secret in kustomization["secretGenerator"]}
    secrets = {v["secret"]["secretName"] for v in _deployment("deployment.yaml")["spec"]["template"]["spec"]["volumes"]
               if "secret" in v}
    assert secrets <= generated
    images = {image["name"] for image in kustomization["images"]}
    assert _container(_deployment("deployment.yaml"))["image"] in images


def test_secret_example_covers_what_the_deployments_read():
    examples = {secret["metadata"]["name"]: secret["stringData"] for secret in _by_kind("Secret")}
    for name in DEPLOYMENTS:
        deployment = _deployment(name)
        for source in _container(deployment).get("envFrom", []):
            assert source["secretRef"]["name"] in examples
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in examples


# -- the registry's own names -------------------------------------------------------------------

def _env_names() -> Iterator[tuple[str, str]]:
    for name in DEPLOYMENTS:
        container = _container(_deployment(name))
        for item in container.get("env", []):
            yield name, item["name"]
    for secret in _by_kind("Secret"):
        for key in secret["stringData"]:
            if key.startswith("REGISTRY_"):
                yield "secret.example.yaml", key
    for compose in ("compose.yaml", "compose.scale.yaml"):
        (document,) = _documents(DEPLOY / compose)
        for service in document["services"].values():
            for key in (service.get("environment") or {}):
                if key.startswith("REGISTRY_"):
                    yield compose, key


def test_every_registry_variable_is_a_real_option():
    names = list(_env_names())
    assert len(names) > 10
    unknown = [f"{where}: {name}" for where, name in names if name not in OPTION_ENV]
    assert not unknown, f"not options of registry/config.py: {unknown}"


def _configmap_config(tmp_path: Path, auth_mount: str) -> Path:
    """The ConfigMap's file, with the auth Secret "mounted" under tmp_path: the configuration is
    checked at load, files named in it included, so the htpasswd file must exist as in the pod."""
    (configmap,) = _by_kind("ConfigMap")
    (secret,) = [s for s in _by_kind("Secret") if s["metadata"]["name"] == "registry-auth"]
    mounted = tmp_path / auth_mount.strip("/")
    mounted.mkdir(parents=True)
    for key, value in secret["stringData"].items():
        (mounted / key).write_text(value)
    path = tmp_path / "registry.yaml"
    path.write_text(configmap["data"]["registry.yaml"].replace(auth_mount + "/", f"{mounted}/"))
    return path


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_configmap_loads_as_each_deployment_runs_it(name: str, tmp_path: Path):
    container = _container(_deployment(name))
    environ = {item["name"]: item["value"] for item in container.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert environ["REGISTRY_CONFIG"] == f"{mounts['config']}/registry.yaml"
    environ["REGISTRY_CONFIG"] = str(_configmap_config(tmp_path, mounts["auth"]))
    if any(source["secretRef"]["name"] == "registry-backends" for source in container.get("envFrom", [])):
        (backends,) = [s for s in _by_kind("Secret") if s["metadata"]["name"] == "registry-backends"]
        environ.update(backends["stringData"])
    config = load(environ=environ)
    assert config.host_port[1] == container["ports"][0]["containerPort"]
    assert config.auth.mode != "none", "through an Ingress nobody is on loopback: anonymous pushes never work"
    assert config.auth.htpasswd.startswith(f"{tmp_path}{mounts['auth']}/")


def test_scale_config_file_loads():
    config = load(environ={"REGISTRY_CONFIG": str(DEPLOY / "registry.scale.yaml")})
    assert config.storage.backend == "s3" and config.database.url.startswith("postgresql")
