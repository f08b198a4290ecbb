"""deploy/k8s: every object valid against the Kubernetes schemas (offline), the kustomizations sound, house rules kept.

The base and the dev overlay are rendered by tests/deploy/kustomize.py (no kustomize binary, no cluster here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from payments_gateway.settings import GatewaySettings
from payments_shared.http.health import CHECK_TIMEOUT_S
from payments_shared.http.serve import shutdown_grace_s

from tests.deploy import k8s_rules
from tests.deploy.kustomize import KustomizeError, Manifest, build, containers, find, pod_spec, read_kustomization

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
DEV = K8S / "overlays" / "dev"
KUSTOMIZATIONS = {"base": BASE, "dev": DEV}
APP_DEPLOYMENTS = {"gateway": 8000, "webhook-ingest": 8001, "transactions": 8080, "billing": 8080}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
APP_SECRET = "payments-secrets"


def render(name: str) -> list[Manifest]:
    return build(KUSTOMIZATIONS[name])


def object_ids(objects: list[Manifest]) -> list[str]:
    return [f"{item['kind']}/{item['metadata']['name']}" for item in objects]


RENDERED = {name: render(name) for name in KUSTOMIZATIONS}
ALL_OBJECTS = [(name, item) for name, objects in RENDERED.items() for item in objects]
ALL_IDS = [f"{name}:{kind_name}" for name, objects in RENDERED.items() for kind_name in object_ids(objects)]
WORKLOADS = [(name, item) for name, item in ALL_OBJECTS if item["kind"] in WORKLOAD_KINDS]
WORKLOAD_IDS = [f"{name}:{item['kind']}/{item['metadata']['name']}" for name, item in WORKLOADS]


# --- kustomizations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_listed_resource_and_patch_exists(name: str) -> None:
    directory = KUSTOMIZATIONS[name]
    kustomization = read_kustomization(directory)
    listed = [*kustomization.get("resources", []), *(patch["path"] for patch in kustomization.get("patches", []))]
    missing = [entry for entry in listed if not (directory / entry).exists()]
    assert not missing, f"{directory.relative_to(ROOT)}/kustomization.yaml lists missing files: {missing}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_yaml_file_is_used(name: str) -> None:
    """A manifest or patch not listed in its kustomization would never be applied: none may lie around."""
    directory = KUSTOMIZATIONS[name]
    kustomization = read_kustomization(directory)
    used = {*kustomization.get("resources", []), *(patch["path"] for patch in kustomization.get("patches", []))}
    present = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert present <= used, f"unlisted files in {directory.relative_to(ROOT)}: {sorted(present - used)}"


def test_the_dev_overlay_builds_on_the_base() -> None:
    assert read_kustomization(DEV)["resources"] == ["../../base"]


def test_the_dev_overlay_patches_hit_existing_objects() -> None:
    """Rendering fails on a patch, replica count or JSON-patch path that targets nothing; also check a few effects."""
    dev = RENDERED["dev"]
    for name in APP_DEPLOYMENTS:
        deployment = find(dev, "Deployment", name)
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
    assert all(hpa["spec"]["minReplicas"] == 1 for hpa in dev if hpa["kind"] == "HorizontalPodAutoscaler")
    assert find(dev, "RabbitmqCluster", "rabbitmq")["spec"]["replicas"] == 1
    assert find(dev, "ConfigMap", "payments-config")["data"]["LOG_LEVEL"] == "DEBUG"


def test_a_patch_that_targets_nothing_is_an_error(tmp_path: Path) -> None:
    """The renderer's own check, proven on a broken overlay."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [str(BASE)], "patches": [{"path": "p.yaml"}]})
    )
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "no-such-service"}})
    )
    with pytest.raises(KustomizeError, match="no-such-service"):
        build(tmp_path)


def order_insensitive(value: Any) -> Any:
    """Named lists (env, containers, ports…) sorted by name: a strategic merge may reorder them."""
    if isinstance(value, dict):
        return {key: order_insensitive(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [order_insensitive(item) for item in value]
        if items and all(isinstance(item, dict) and "name" in item for item in items):
            return sorted(items, key=lambda item: str(item["name"]))
        return items
    return value


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: the offline renderer alone is used")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_offline_renderer_agrees_with_kustomize(name: str) -> None:
    """Where kubectl is at hand, its built-in kustomize (offline) renders the same objects as our renderer."""
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    theirs = [item for item in yaml.safe_load_all(result.stdout) if item]
    assert sorted(object_ids(theirs)) == sorted(object_ids(RENDERED[name]))
    ours = {f"{item['kind']}/{item['metadata']['name']}": order_insensitive(item) for item in RENDERED[name]}
    for item in theirs:
        assert order_insensitive(item) == ours[f"{item['kind']}/{item['metadata']['name']}"]


def test_no_literal_secret_object_is_rendered() -> None:
    assert not [item for _, item in ALL_OBJECTS if item["kind"] == "Secret"]


# --- schemas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "manifest"), ALL_OBJECTS, ids=ALL_IDS)
def test_object_is_valid_against_its_schema(name: str, manifest: Manifest) -> None:
    k8s_rules.validate_schema(manifest)


def test_custom_resource_pod_fields_are_valid_kubernetes_types() -> None:
    """RabbitmqCluster's resources and affinity are core Kubernetes types: check them with the core schemas."""
    for objects in RENDERED.values():
        spec = find(objects, "RabbitmqCluster", "rabbitmq")["spec"]
        k8s_rules.validate_core_fragment(spec["resources"], "resourcerequirements-v1.json")
        if "affinity" in spec:
            k8s_rules.validate_core_fragment(spec["affinity"], "affinity-v1.json")


def test_the_schema_check_rejects_an_unknown_field() -> None:
    deployment = find(render("base"), "Deployment", "gateway")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(Exception, match="readinessProbes"):
        k8s_rules.validate_schema(deployment)


# --- house rules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "workload"), WORKLOADS, ids=WORKLOAD_IDS)
def test_workload_keeps_the_house_rules(name: str, workload: Manifest) -> None:
    assert k8s_rules.container_problems(workload) == []


def test_the_rules_catch_a_bad_container() -> None:
    deployment = find(render("base"), "Deployment", "gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "payments/gateway:latest"
    del container["readinessProbe"]
    del container["resources"]["limits"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["env"].append({"name": "STRIPE_API_KEY", "value": "sk_test_123"})
    container["env"].append({"name": "EXTRA", "value": "amqp://user:pass@rabbitmq:5672/"})
    problems = "\n".join(k8s_rules.container_problems(deployment))
    expected = ("not pinned", "no readinessProbe", "limits.cpu", "readOnlyRootFilesystem", "STRIPE_API_KEY", "EXTRA")
    assert all(text in problems for text in expected), problems


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_app_deployments_probe_readyz_and_healthz_on_their_port(name: str) -> None:
    for deployment_name, port in APP_DEPLOYMENTS.items():
        container = find(RENDERED[name], "Deployment", deployment_name)["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["readinessProbe"]["timeoutSeconds"] > CHECK_TIMEOUT_S  # else cut before its 503 answers
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert {"name": "PORT", "value": str(port)} in container["env"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_behind_a_service_drain_before_they_stop(name: str) -> None:
    # Without a preStop pause the port closed at SIGTERM while the ingress still routed to the pod (probe: 154 of
    # 300 requests refused, one answer cut off). The pause and the in-flight requests' end fit in the grace period.
    for deployment_name in ("gateway", "webhook-ingest"):
        pod = find(RENDERED[name], "Deployment", deployment_name)["spec"]["template"]["spec"]
        pause = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert pause[0] == "sleep" and 3 <= int(pause[1]) <= 10, pause
        grace_s = shutdown_grace_s(GatewaySettings.model_fields["rpc_timeout_s"].default)  # RPC_TIMEOUT_S's default
        assert int(pause[1]) + grace_s < pod["terminationGracePeriodSeconds"]


def test_app_secrets_come_only_from_the_out_of_band_secret_and_are_documented() -> None:
    """Deployments reference `payments-secrets` keys; the README says how to create it with each of them."""
    readme = (K8S / "README.md").read_text()
    assert APP_SECRET in readme
    for deployment_name in APP_DEPLOYMENTS:
        refs = k8s_rules.secret_key_refs(find(RENDERED["base"], "Deployment", deployment_name))
        assert {"BROKER_URL", "EVENTSTORE_URI"} <= {key for _, key in refs}
        for secret, key in refs:
            assert secret == APP_SECRET
            assert re.search(rf"\b{key}\b", readme), f"deploy/k8s/README.md does not mention {key}"


def test_every_referenced_secret_is_documented_as_created_out_of_band() -> None:
    readme = (K8S / "README.md").read_text()
    referenced = {name for _, item in WORKLOADS for name, _ in k8s_rules.secret_key_refs(item)}
    for _, item in WORKLOADS:
        volumes = (pod_spec(item) or {}).get("volumes", [])
        referenced |= {volume["secret"]["secretName"] for volume in volumes if "secret" in volume}
    for _, item in ALL_OBJECTS:
        if item["kind"] == "Ingress":
            referenced |= {tls["secretName"] for tls in item["spec"].get("tls", [])}
    assert referenced >= {APP_SECRET, "kurrentdb-tls", "kurrentdb-admin", "payments-tls"}
    undocumented = [name for name in referenced if f"**`{name}`**" not in readme]
    assert not undocumented, f"deploy/k8s/README.md does not say how to create {undocumented}"


# --- wiring between objects ------------------------------------------------------------------------------------


def pod_labels(objects: list[Manifest]) -> list[dict[str, str]]:
    return [item["spec"]["template"]["metadata"]["labels"] for item in objects if item["kind"] in WORKLOAD_KINDS]


def selects_some_pod(selector: dict[str, str], objects: list[Manifest]) -> bool:
    return any(selector.items() <= labels.items() for labels in pod_labels(objects))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_services_and_budgets_select_existing_pods(name: str) -> None:
    objects = RENDERED[name]
    for item in objects:
        if item["kind"] == "Service":
            assert selects_some_pod(item["spec"]["selector"], objects), object_ids([item])
        if item["kind"] == "PodDisruptionBudget":
            assert selects_some_pod(item["spec"]["selector"]["matchLabels"], objects), object_ids([item])


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_workload_has_a_disruption_budget(name: str) -> None:
    objects = RENDERED[name]
    budgets = [item["spec"]["selector"]["matchLabels"] for item in objects if item["kind"] == "PodDisruptionBudget"]
    for labels in pod_labels(objects):
        assert any(budget.items() <= labels.items() for budget in budgets), labels


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_autoscalers_cover_the_gateway_and_the_workers(name: str) -> None:
    objects = RENDERED[name]
    scaled = {}
    for hpa in (item for item in objects if item["kind"] == "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        find(objects, target["kind"], target["name"])
        scaled[target["name"]] = hpa["spec"]
    assert {"gateway", "transactions", "billing"} <= set(scaled)
    assert all(spec["minReplicas"] <= spec["maxReplicas"] for spec in scaled.values())


def test_the_ingress_sends_webhooks_to_webhook_ingest_and_the_rest_to_the_gateway() -> None:
    objects = RENDERED["base"]
    ingress = find(objects, "Ingress", "payments")
    routes = {
        path["path"]: path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["pathType"] == "Prefix"
    }
    assert routes["/api/v1/webhooks/"]["name"] == "webhook-ingest"
    assert routes["/"]["name"] == "gateway"
    for backend in routes.values():
        service = find(objects, "Service", backend["name"])
        assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_service_target_ports_exist_on_the_pods(name: str) -> None:
    objects = RENDERED[name]
    for service in (item for item in objects if item["kind"] == "Service"):
        workloads = [
            item
            for item in objects
            if item["kind"] in WORKLOAD_KINDS
            and service["spec"]["selector"].items() <= item["spec"]["template"]["metadata"]["labels"].items()
        ]
        port_names = {port.get("name") for item in workloads for c in containers(item) for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


# --- the production topology -----------------------------------------------------------------------------------


def kurrentdb_env(objects: list[Manifest]) -> dict[str, str]:
    container = find(objects, "StatefulSet", "kurrentdb")["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_production_runs_three_rabbitmq_nodes_and_three_kurrentdb_nodes() -> None:
    objects = RENDERED["base"]
    rabbitmq = find(objects, "RabbitmqCluster", "rabbitmq")
    assert rabbitmq["spec"]["replicas"] == 3
    assert "default_queue_type = quorum" in rabbitmq["spec"]["rabbitmq"]["additionalConfig"]
    statefulset = find(objects, "StatefulSet", "kurrentdb")
    headless = find(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    env = kurrentdb_env(objects)
    assert env["KURRENTDB_DISCOVER_VIA_DNS"] == "true"
    assert env["KURRENTDB_CLUSTER_DNS"].startswith(f"{headless['metadata']['name']}.payments.svc")
    assert env["KURRENTDB_INSECURE"] == "false"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kurrentdb_cluster_size_matches_its_replicas(name: str) -> None:
    objects = RENDERED[name]
    replicas = find(objects, "StatefulSet", "kurrentdb")["spec"]["replicas"]
    assert int(kurrentdb_env(objects)["KURRENTDB_CLUSTER_SIZE"]) == replicas
    assert replicas % 2 == 1, "a KurrentDB cluster needs an odd number of nodes"


def test_dev_kurrentdb_is_insecure_without_certificate_settings() -> None:
    env = kurrentdb_env(RENDERED["dev"])
    assert env["KURRENTDB_INSECURE"] == "true"
    assert not [name for name in env if name.startswith("KURRENTDB_CERTIFICATE")]
    probe = find(RENDERED["dev"], "StatefulSet", "kurrentdb")["spec"]["template"]["spec"]["containers"][0]
    assert probe["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_every_object_is_namespaced_to_payments() -> None:
    for _, item in ALL_OBJECTS:
        if item["kind"] != "Namespace":
            assert item["metadata"]["namespace"] == "payments", object_ids([item])
