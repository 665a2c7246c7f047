"""deploy/k8s, checked offline: each overlay built with ``kubectl kustomize`` (kubectl's own
kustomize; the test skips, or fails under BLOG_REQUIRE_SERVICES=1, without kubectl), every
resource validated by kubernetes-validate in strict mode (unknown fields are errors) against the
oldest and the newest Kubernetes it targets, then what schemas miss: selectors and references
point at what exists, every container has resources and probes, every container of the blog's
image runs a role the image has, probes a path its process serves, and can be built from the
environment and config its pod gives it, and the config names only Services of the build."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from blog import roles
from tests.deploy.checks import (
    CONFIG_MOUNT,
    IMAGE,
    ROOT,
    Container,
    built,
    check_probe,
    config_endpoints,
    environment_names_the_app_reads,
    load,
    roles_healthcheck,
    secret_value,
)

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
"""The oldest Kubernetes the manifests target, and the newest kubernetes-validate knows."""
NAMESPACE = "strangler-blog"
WORKLOADS = ("Deployment", "StatefulSet")
POD_IP = "192.0.2.10"  # TEST-NET-1: a stand-in, never contacted

Resource = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = (
            "kubectl is not installed, so the kustomize overlays were not built (only each "
            "manifest file was validated); scripts/ensure-services installs it as root, or see "
            "https://kubernetes.io/docs/tasks/tools/"
        )
        if os.environ.get("BLOG_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def kustomization(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def secrets_env(example: Path) -> str:
    """The secrets.env a user makes from secrets.env.example: every uncommented key filled in,
    the commented (optional) ones left out."""
    lines = []
    for line in example.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert value == "", f"{example.name}: {name} has a value; an example holds none"
            lines.append(f"{name}={secret_value(name)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Resource]]:
    """Every overlay, built by kubectl kustomize from a copy of deploy/k8s with the secrets.env
    files git ignores made from their examples."""
    binary = kubectl()
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    for example in copy.rglob("secrets.env.example"):
        example.with_name("secrets.env").write_text(secrets_env(example))
    result: dict[str, list[Resource]] = {}
    for overlay in OVERLAYS:
        built_ = subprocess.run(
            [binary, "kustomize", str(copy / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert built_.returncode == 0, f"kubectl kustomize overlays/{overlay}:\n{built_.stderr}"
        result[overlay] = [d for d in yaml.safe_load_all(built_.stdout) if d]
    return result


def named(resources: list[Resource], kind: str, name: str) -> Resource | None:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    return None


def pods(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    """(workload, its pod template) for every Deployment and StatefulSet."""
    for resource in resources:
        if resource["kind"] in WORKLOADS:
            yield resource, resource["spec"]["template"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def validate_strict(resource: Resource, where: str) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{where}: {resource['kind']}/{resource['metadata']['name']} is not "
                f"valid Kubernetes {version}: {path}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}")


# --------------------------------------------------------------------------- schemas


def test_every_manifest_file_validates_strict_on_its_own() -> None:
    """Without kubectl, each file a kustomization lists is validated as it is (they are complete
    resources); with kubectl, the built overlays below validate the same resources as deployed."""
    if shutil.which("kubectl") is not None:
        pytest.skip("kubectl builds the overlays: their resources are validated as built")
    files = [
        folder / entry
        for folder in (K8S / "base", K8S / "services")
        for entry in kustomization(folder).get("resources", [])
        if (folder / entry).is_file()
    ]
    assert len(files) >= 5
    for path in files:
        for resource in yaml.safe_load_all(path.read_text()):
            if resource:
                validate_strict(resource, str(path.relative_to(ROOT)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_every_resource_validates_strict(
    overlay: str, builds: dict[str, list[Resource]]
) -> None:
    resources = builds[overlay]
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    for resource in resources:
        validate_strict(resource, f"overlays/{overlay}")
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == NAMESPACE, (
                f"{resource['kind']}/{resource['metadata']['name']}: not in {NAMESPACE}"
            )


def test_both_topologies_are_there(builds: dict[str, list[Resource]]) -> None:
    assert set(OVERLAYS) == {"monolith", "extracted"}
    extracted = {r["metadata"]["name"] for r in builds["extracted"] if r["kind"] == "Deployment"}
    assert extracted == {"monolith", "auth", "posts", "images", "payments", "email"}
    monolith = {r["metadata"]["name"] for r in builds["monolith"] if r["kind"] == "Deployment"}
    assert monolith == {"monolith"}


# --------------------------------------------------------------------------- what schemas miss


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_targets_point_at_what_exists(
    overlay: str, builds: dict[str, list[Resource]]
) -> None:
    resources = builds[overlay]
    templates = [template["metadata"]["labels"] for _, template in pods(resources)]
    for workload, template in pods(resources):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, template["metadata"]["labels"]), (
            f"{workload['metadata']['name']}: its selector does not select its own pods"
        )
    for resource in resources:
        kind, name = resource["kind"], resource["metadata"]["name"]
        if kind == "Service":
            selector = resource["spec"]["selector"]
            assert any(selects(selector, labels) for labels in templates), (
                f"Service {name} selects no pod of the build ({selector})"
            )
        elif kind == "PodDisruptionBudget":
            selector = resource["spec"]["selector"]["matchLabels"]
            assert any(selects(selector, labels) for labels in templates), (
                f"PodDisruptionBudget {name} selects no pod"
            )
        elif kind == "HorizontalPodAutoscaler":
            target = resource["spec"]["scaleTargetRef"]
            scaled = named(resources, target["kind"], target["name"])
            assert scaled is not None, f"HorizontalPodAutoscaler {name}: no {target}"
            assert "replicas" not in scaled["spec"], (
                f"{target['name']}: the autoscaler owns replicas; an apply would reset them"
            )
        elif kind == "StatefulSet":
            service = named(resources, "Service", resource["spec"]["serviceName"])
            assert service is not None and service["spec"].get("clusterIP") == "None", (
                f"StatefulSet {name}: its serviceName must be a headless Service"
            )
    hpas = [r for r in resources if r["kind"] == "HorizontalPodAutoscaler"]
    if overlay == "extracted":
        assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["images"]
        assert hpas[0]["spec"]["minReplicas"] >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(overlay: str, builds: dict[str, list[Resource]]) -> None:
    resources = builds[overlay]
    for workload, template in pods(resources):
        spec = template["spec"]
        where = workload["metadata"]["name"]
        for volume in spec.get("volumes", []):
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if key in volume:
                    ref = volume[key].get("name") or volume[key].get("secretName")
                    assert named(resources, kind, ref) is not None, f"{where}: no {kind} {ref}"
        for box in [*spec.get("initContainers", []), *spec["containers"]]:
            for variable in box.get("env", []):
                source = variable.get("valueFrom", {})
                for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if key in source:
                        ref = source[key]
                        target = named(resources, kind, ref["name"])
                        assert target is not None, f"{where}: {variable['name']}: no {kind}"
                        if not ref.get("optional"):
                            assert ref["key"] in target.get("data", {}), (
                                f"{where}: {variable['name']}: {kind} {ref['name']} has no "
                                f"key {ref['key']} (and the reference is not optional)"
                            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_and_probes(
    overlay: str, builds: dict[str, list[Resource]]
) -> None:
    for workload, template in pods(builds[overlay]):
        spec = template["spec"]
        for box in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{workload['metadata']['name']}/{box['name']}"
            resources = box.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{where}: resources.{bound} needs cpu and memory"
                )
        for box in spec["containers"]:
            assert "readinessProbe" in box and "livenessProbe" in box, (
                f"{workload['metadata']['name']}/{box['name']}: readiness and liveness probes"
            )


def pod_environment(box: dict[str, Any], resources: list[Resource]) -> dict[str, str]:
    """What the container's environment would be: secret and config-map values from the build
    (an optional reference to a missing key: absent), the pod's IP a stand-in."""
    environ: dict[str, str] = {}
    for variable in box.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = variable["value"]
            continue
        source = variable["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP"
            environ[variable["name"]] = POD_IP
            continue
        secret = "secretKeyRef" in source
        kind, key = ("Secret", "secretKeyRef") if secret else ("ConfigMap", "configMapKeyRef")
        ref = source[key]
        target = named(resources, kind, ref["name"])
        assert target is not None
        data = target.get("data", {})
        if ref["key"] in data:
            value = data[ref["key"]]
            environ[variable["name"]] = base64.b64decode(value).decode() if secret else value
    return environ


def mounted_config(spec: dict[str, Any], box: dict[str, Any], resources: list[Resource]) -> str:
    folder = str(Path(CONFIG_MOUNT).parent)
    for mount in box.get("volumeMounts", []):
        if mount["mountPath"] == folder:
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            config_map = named(resources, "ConfigMap", volume["configMap"]["name"])
            assert config_map is not None
            text: str = config_map["data"][Path(CONFIG_MOUNT).name]
            return text
    raise AssertionError(f"{box['name']}: no config mounted at {folder}")


AppContainer = tuple[str, dict[str, Any], dict[str, Any], bool]


def app_containers(resources: list[Resource]) -> Iterator[AppContainer]:
    """(where, pod spec, container, is an init container) for the blog's image."""
    for workload, template in pods(resources):
        spec = template["spec"]
        for init, boxes in ((True, spec.get("initContainers", [])), (False, spec["containers"])):
            for box in boxes:
                if box["image"].split("/")[-1].startswith(IMAGE):
                    yield f"{workload['metadata']['name']}/{box['name']}", spec, box, init


def container(
    where: str, spec: dict[str, Any], box: dict[str, Any], resources: list[Resource]
) -> Container:
    args = box.get("args")
    assert "command" not in box, f"{where}: keep the image's entry point (python -m blog.roles)"
    assert isinstance(args, list) and len(args) == 1, f"{where}: args: [<role>]"
    return Container(
        where=where,
        role=args[0],
        environ=pod_environment(box, resources),
        config_text=mounted_config(spec, box, resources),
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_app_container_runs_a_role_it_can_start_and_probes_its_health(
    overlay: str, builds: dict[str, list[Resource]], tmp_path: Path
) -> None:
    resources = builds[overlay]
    seen = set()
    for where, spec, box, init in app_containers(resources):
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        app = container(where, spec, box, resources)
        seen.add(app.role)
        unknown = {v["name"] for v in box.get("env", [])} - environment_names_the_app_reads()
        assert not unknown, f"{where}: the blog reads no {sorted(unknown)}"
        assert roles.ROLES[app.role].one_shot == init, (
            f"{where}: {app.role} {'is not' if init else 'is'} a one-shot role"
        )
        with built(app, tmp_path) as process:
            for kind in () if init else ("readinessProbe", "livenessProbe"):
                probe = box[kind]
                if "httpGet" in probe:
                    port = probe["httpGet"]["port"]
                    if isinstance(port, str):
                        (port,) = [p["containerPort"] for p in box["ports"] if p["name"] == port]
                    check_probe(app, process, probe["httpGet"]["path"], port)
                else:
                    assert roles_healthcheck(probe["exec"]["command"]) == app.role, (
                        f"{where}: {kind}: python -m blog.roles healthcheck {app.role}"
                    )
                    role = roles.ROLES[app.role]
                    assert role.health_path is not None
                    check_probe(app, process, role.health_path, None)
    expected = {"monolith", "init-db"}
    if overlay == "extracted":
        expected |= {"auth", "posts", "images", "payments", "worker"}
    assert seen == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_names_services_of_the_build(
    overlay: str, builds: dict[str, list[Resource]], tmp_path: Path
) -> None:
    """Every host a process connects to is a Service of the build, on a port it serves; a
    service the monolith balances over by DNS is headless (each pod's address, not one virtual
    IP) and selects the pods that run that service."""
    resources = builds[overlay]
    for where, spec, box, _init in app_containers(resources):
        app = container(where, spec, box, resources)
        config = load(app, tmp_path)
        for what, host, port in config_endpoints(config, app.role):
            service = named(resources, "Service", host)
            assert service is not None, f"{where}: {what} names {host}, not a Service"
            assert port in [p["port"] for p in service["spec"]["ports"]], (
                f"{where}: {what}: Service {host} has no port {port}"
            )
            if what.startswith("services.") and config.discovery.kind == "dns":
                assert service["spec"].get("clusterIP") == "None", (
                    f"Service {host}: headless, or the monolith sees one address, not each pod"
                )
                domain = what.split(".")[1]
                served = {
                    template["spec"]["containers"][0].get("args", [None])[0]
                    for _, template in pods(resources)
                    if selects(service["spec"]["selector"], template["metadata"]["labels"])
                }
                assert served == {"worker" if domain == "email" else domain}, (
                    f"Service {host} selects pods running {served}"
                )


def test_no_secret_is_committed() -> None:
    """Secrets come from a generator reading a file git ignores; no manifest holds one."""
    for path in K8S.rglob("*.yaml"):
        for resource in yaml.safe_load_all(path.read_text()):
            if resource:
                assert resource.get("kind") != "Secret", f"{path}: a Secret in the repository"
    generators = [
        (folder, generator)
        for folder in (K8S / "base", K8S / "services", *(K8S / "overlays").iterdir())
        for generator in kustomization(folder).get("secretGenerator", [])
    ]
    assert generators, "the Secret comes from a secretGenerator"
    for folder, generator in generators:
        assert not generator.get("literals"), "no secret literal in a kustomization"
        for source in [*generator.get("envs", []), *generator.get("files", [])]:
            relative = (folder / source).relative_to(ROOT)
            ignored = subprocess.run(
                ["git", "check-ignore", "--quiet", str(relative)], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{relative}: holds secrets, must be ignored by git"
            assert (folder / f"{source}.example").is_file(), f"{relative}.example: missing"
