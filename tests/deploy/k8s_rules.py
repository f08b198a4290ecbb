"""Schema validation and house rules for Kubernetes objects, as pure functions returning the problems found.

Schemas: the Kubernetes JSON schemas bundled by the `kubernetes-validate` package (offline, strict: an unknown
field is an error). Kinds the Kubernetes schemas do not know (the RabbitMQ operator's RabbitmqCluster) are
validated against a structural schema kept beside this file; any other unknown kind is a failure.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

from tests.deploy.kustomize import Manifest, containers, pod_spec, split_image

KUBERNETES_VERSION = "1.30"
SCHEMA_DIR = Path(__file__).parent / "schemas"
CUSTOM_SCHEMAS = {("rabbitmq.com/v1beta1", "RabbitmqCluster"): SCHEMA_DIR / "rabbitmqcluster-v1beta1.json"}

# Names that hold credentials. A *_FILE / *_PATH variable holds where a credential is, not the credential.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|TRANSACTION_KEY|SIGNATURE_KEY|PRIVATE_KEY|LOGIN_ID")
PATH_NAME = re.compile(r"_(FILE|PATH|DIR)$")
# Variables whose value is a URL that may carry a user and password.
CREDENTIAL_URLS = {"BROKER_URL", "EVENTSTORE_URI", "RATE_LIMIT_STORAGE"}
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None and PATH_NAME.search(name) is None


def validate_schema(manifest: Manifest) -> None:
    """Raise jsonschema.ValidationError (or SchemaNotFoundError for an unknown kind) if the object is invalid."""
    custom = CUSTOM_SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
    if custom is not None:
        jsonschema.Draft202012Validator(json.loads(custom.read_text())).validate(manifest)
        return
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def validate_core_fragment(value: Any, type_file: str) -> None:
    """Validate a fragment (e.g. an Affinity inside a custom resource) against one Kubernetes type's schema."""
    folder = importlib.resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    )
    schema = json.loads(folder.joinpath(type_file).read_text())
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    jsonschema.Draft202012Validator(schema, registry=registry).validate(value)


def image_problems(image: str) -> list[str]:
    _, tag, digest = split_image(image)
    if digest:
        return []
    if tag is None:
        return [f"image {image} has no tag"]
    if tag == "latest" or tag.endswith("-latest") or not re.search(r"\d", tag):
        return [f"image {image} is not pinned to a version"]
    return []


def probe_problems(container: Manifest) -> list[str]:
    problems = []
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in container:
            problems.append(f"container {container['name']} has no {probe}")
    return problems


def resource_problems(container: Manifest) -> list[str]:
    resources = container.get("resources", {})
    return [
        f"container {container['name']} sets no {bound}.{kind}"
        for bound in ("requests", "limits")
        for kind in ("cpu", "memory")
        if kind not in resources.get(bound, {})
    ]


def security_problems(manifest: Manifest, container: Manifest) -> list[str]:
    """The effective securityContext (container over pod) must be non-root, read-only, unprivileged, seccomp'd."""
    pod_context = (pod_spec(manifest) or {}).get("securityContext", {})
    context = container.get("securityContext", {})

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    name = container["name"]
    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append(f"container {name}: runAsNonRoot is not true")
    if effective("runAsUser") == 0:
        problems.append(f"container {name}: runAsUser is 0")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"container {name}: readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"container {name}: allowPrivilegeEscalation is not false")
    if context.get("privileged"):
        problems.append(f"container {name}: privileged")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"container {name}: capabilities do not drop ALL")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"container {name}: seccompProfile is not RuntimeDefault")
    return problems


def tmp_problems(manifest: Manifest, container: Manifest) -> list[str]:
    """A read-only root filesystem needs a writable /tmp: an emptyDir mounted there."""
    empty_dirs = {volume["name"] for volume in (pod_spec(manifest) or {}).get("volumes", []) if "emptyDir" in volume}
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"] == "/tmp" and mount["name"] in empty_dirs:
            return []
    return [f"container {container['name']} has no emptyDir at /tmp"]


def secret_problems(manifest: Manifest) -> list[str]:
    """No credential is written in a manifest: no Secret object with data, secret-like env only by secretKeyRef."""
    if manifest["kind"] == "Secret" and (manifest.get("data") or manifest.get("stringData")):
        return [f"Secret {manifest['metadata']['name']} holds literal values"]
    if manifest["kind"] == "ConfigMap":
        return [
            f"ConfigMap {manifest['metadata']['name']} holds {key}"
            for key, value in (manifest.get("data") or {}).items()
            if is_secret_name(key) or key in CREDENTIAL_URLS - {"RATE_LIMIT_STORAGE"} or URL_WITH_PASSWORD.search(value)
        ]
    problems = []
    for container in containers(manifest):
        for variable in container.get("env", []):
            name, value = variable["name"], variable.get("value")
            if value is None:
                continue
            if is_secret_name(name) or name in CREDENTIAL_URLS - {"RATE_LIMIT_STORAGE"}:
                problems.append(f"container {container['name']}: {name} has a literal value (use secretKeyRef)")
            elif URL_WITH_PASSWORD.search(str(value)):
                problems.append(f"container {container['name']}: {name} holds a URL with a password")
    return problems


def container_problems(manifest: Manifest) -> list[str]:
    """Every house rule for each container of a workload."""
    problems = []
    for container in containers(manifest):
        problems += image_problems(container["image"])
        problems += probe_problems(container)
        problems += resource_problems(container)
        problems += security_problems(manifest, container)
        problems += tmp_problems(manifest, container)
    return problems + secret_problems(manifest)


def secret_key_refs(manifest: Manifest) -> set[tuple[str, str]]:
    """(secret name, key) of every secretKeyRef in a workload."""
    refs = set()
    for container in containers(manifest):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
    return refs
