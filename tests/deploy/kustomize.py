"""A small offline stand-in for `kustomize build`, enough to render and check deploy/k8s without the binary.

It supports exactly the features deploy/k8s uses: `resources` (files, and directories holding a kustomization),
`namespace`, `labels` (metadata only), `images`, `replicas` and `patches` (strategic-merge files naming their
object, and JSON 6902 lists with a `target`). Any other field is refused, so a kustomization cannot grow a
feature these checks would silently not render. Every patch and replica entry must hit an existing object.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "labels", "images", "replicas", "patches", "resources"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass"}
SCALABLE_KINDS = {"Deployment", "StatefulSet", "ReplicaSet"}


class KustomizeError(Exception):
    """The kustomization cannot be rendered: a missing file, an unsupported field, a patch that hits nothing."""


@dataclass(frozen=True)
class Target:
    group: str | None = None
    version: str | None = None
    kind: str | None = None
    name: str | None = None
    label_selector: str | None = None


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document of a file."""
    with path.open() as stream:
        return [document for document in yaml.safe_load_all(stream) if document is not None]


def read_kustomization(directory: Path) -> Manifest:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text())
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not support: {sorted(unknown)}")
    return dict(kustomization)


def build(directory: Path) -> list[Manifest]:
    """Render a kustomization directory into its list of objects."""
    kustomization = read_kustomization(directory)
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        resource = (directory / entry).resolve()
        if resource.is_dir():
            objects.extend(build(resource))
        elif resource.is_file():
            objects.extend(load_documents(resource))
        else:
            raise KustomizeError(f"{directory}/kustomization.yaml: resource {entry} does not exist")
    for patch in kustomization.get("patches", []):
        apply_patch(objects, directory, patch)
    for replica in kustomization.get("replicas", []):
        set_replicas(objects, replica["name"], int(replica["count"]))
    for image in kustomization.get("images", []):
        set_image(objects, image)
    for label_set in kustomization.get("labels", []):
        for manifest in objects:
            manifest.setdefault("metadata", {}).setdefault("labels", {}).update(label_set.get("pairs", {}))
    if "namespace" in kustomization:
        for manifest in objects:
            if manifest["kind"] not in CLUSTER_SCOPED_KINDS:
                manifest["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [manifest for manifest in objects if manifest["kind"] == kind and manifest["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KustomizeError(f"expected one {kind}/{name}, found {len(matches)}")
    return matches[0]


def api_group_version(manifest: Manifest) -> tuple[str, str]:
    group, _, version = str(manifest["apiVersion"]).rpartition("/")
    return group, version


def labels_match(manifest: Manifest, selector: str) -> bool:
    labels = manifest.get("metadata", {}).get("labels", {}) or {}
    for requirement in selector.split(","):
        key, _, value = requirement.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def matches(manifest: Manifest, target: Target) -> bool:
    group, version = api_group_version(manifest)
    checks = [
        target.group is None or target.group == group,
        target.version is None or target.version == version,
        target.kind is None or target.kind == manifest["kind"],
        target.name is None or re.fullmatch(target.name, manifest["metadata"]["name"]) is not None,
        target.label_selector is None or labels_match(manifest, target.label_selector),
    ]
    return all(checks)


def targets_of(objects: list[Manifest], target: Target) -> list[Manifest]:
    hit = [manifest for manifest in objects if matches(manifest, target)]
    if not hit:
        raise KustomizeError(f"patch target {target} matches no object")
    return hit


def apply_patch(objects: list[Manifest], directory: Path, entry: Manifest) -> None:
    path = directory / entry["path"]
    if not path.is_file():
        raise KustomizeError(f"{directory}/kustomization.yaml: patch {entry['path']} does not exist")
    content = yaml.safe_load(path.read_text())
    if isinstance(content, list):  # JSON 6902: needs a target
        if "target" not in entry:
            raise KustomizeError(f"{path}: a JSON 6902 patch needs a target")
        spec = entry["target"]
        target = Target(
            spec.get("group"), spec.get("version"), spec.get("kind"), spec.get("name"), spec.get("labelSelector")
        )
        for manifest in targets_of(objects, target):
            for operation in content:
                apply_json_patch_operation(manifest, operation)
        return
    named = find(objects, content["kind"], content["metadata"]["name"])
    if api_group_version(named) != api_group_version(content):
        raise KustomizeError(f"{path}: apiVersion {content['apiVersion']} differs from the object's")
    merged = strategic_merge(named, content)
    named.clear()
    named.update(merged)


def strategic_merge(base: Any, patch: Any) -> Any:
    """Maps merge key by key (null deletes); lists of named maps merge by name (`$patch: delete` removes one)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        result = dict(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in base:
                result[key] = strategic_merge(base[key], value)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(base, list) and all(_named(item) for item in [*patch, *base]):
        merged = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old["name"] == item["name"]), None)
            if item.get("$patch") == "delete":
                if index is None:
                    raise KustomizeError(f"$patch: delete of {item['name']}, which is not there")
                merged.pop(index)
            elif index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = strategic_merge(merged[index], item)
        return merged
    return copy.deepcopy(patch)


def _named(item: Any) -> bool:
    return isinstance(item, dict) and "name" in item


def apply_json_patch_operation(manifest: Manifest, operation: Manifest) -> None:
    """RFC 6902 add, replace and remove: `replace` and `remove` need the path to exist."""
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    node: Any = manifest
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            raise KustomizeError(f"JSON patch path {operation['path']} does not exist")
    key: Any = int(last) if isinstance(node, list) and last != "-" else last
    exists = key < len(node) if isinstance(node, list) and isinstance(key, int) else key in node
    op = operation["op"]
    if op in ("replace", "remove") and not exists:
        raise KustomizeError(f"JSON patch {op} of {operation['path']}, which does not exist")
    if op == "remove":
        del node[key]
    elif op == "add" and isinstance(node, list):
        node.insert(len(node) if key == "-" else key, copy.deepcopy(operation["value"]))
    elif op in ("add", "replace"):
        node[key] = copy.deepcopy(operation["value"])
    else:
        raise KustomizeError(f"JSON patch op {op} is not supported here")


def set_replicas(objects: list[Manifest], name: str, count: int) -> None:
    hit = [item for item in objects if item["kind"] in SCALABLE_KINDS and item["metadata"]["name"] == name]
    if not hit:
        raise KustomizeError(f"replicas: no Deployment or StatefulSet named {name}")
    for manifest in hit:
        manifest["spec"]["replicas"] = count


def pod_spec(manifest: Manifest) -> Manifest | None:
    if manifest["kind"] in SCALABLE_KINDS | {"DaemonSet", "Job"}:
        spec: Manifest = manifest["spec"]["template"]["spec"]
        return spec
    if manifest["kind"] == "Pod":
        pod: Manifest = manifest["spec"]
        return pod
    return None


def containers(manifest: Manifest) -> list[Manifest]:
    spec = pod_spec(manifest)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` into its parts (a registry port's colon is not a tag)."""
    name, _, digest = image.partition("@")
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def set_image(objects: list[Manifest], entry: Manifest) -> None:
    for manifest in objects:
        for container in containers(manifest):
            name, tag, digest = split_image(container["image"])
            if name != entry["name"]:
                continue
            new_name = entry.get("newName", name)
            if "digest" in entry:
                container["image"] = f"{new_name}@{entry['digest']}"
            else:
                new_tag = entry.get("newTag", tag)
                container["image"] = new_name + (f":{new_tag}" if new_tag else "") + (f"@{digest}" if digest else "")
