"""Workload rules cover every pod controller, and the NVIDIA device plugin passes only as the reviewed
exception: its exact controller, its exact image, its exact privileges, nothing more. Real program output
(the shipped dev and prod stacks), edited; every verdict from the real analyzer."""

from __future__ import annotations

import copy

import pytest

from policies.rules import POD_SPEC_PATHS, REVIEWED_WORKLOADS, pod_spec
from tests.policies.helpers import add, container, edit, setter
from tests.policies.helpers import violations as _violations

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
MODEL = "model-diabetes"
PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"

# The rules the device plugin would fail without its reviewed exception.
EXCEPTED = {"containers-restricted", "containers-read-only-root-filesystem", "pods-no-host-paths", "images-from-acr-pinned"}
# The pod-template rules every controller gets.
POD_RULES = EXCEPTED | {"containers-drop-all-capabilities", "pods-no-host-namespaces", "platform-images-pinned-by-digest"}

# --------------------------------------------------------------------------- every controller

CONTROLLERS = {
    "DaemonSet": "kubernetes:apps/v1:DaemonSet",
    "StatefulSet": "kubernetes:apps/v1:StatefulSet",
    "ReplicaSet": "kubernetes:apps/v1:ReplicaSet",
    "Job": "kubernetes:batch/v1:Job",
    "CronJob": "kubernetes:batch/v1:CronJob",
    "Pod": "kubernetes:core/v1:Pod",
}


def as_controller(kind: str, change=lambda pod: None):
    """The model Deployment's pod template, hardened as the program builds it, as another controller (`change` edits its pod spec)."""

    def make(props: dict) -> dict:
        template = copy.deepcopy(props["spec"]["template"])
        change(template["spec"])
        metadata = {**props["metadata"], "name": f"model-diabetes-{kind.lower()}"}
        if kind == "Pod":
            return {"apiVersion": "v1", "kind": kind, "metadata": {**metadata, "labels": template["metadata"]["labels"]}, "spec": template["spec"]}
        if kind == "CronJob":
            spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
        elif kind == "Job":
            spec = {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}
        else:
            spec = {"selector": props["spec"]["selector"], "template": template}
        return {"apiVersion": "batch/v1" if kind in ("Job", "CronJob") else "apps/v1", "kind": kind, "metadata": metadata, "spec": spec}

    return add(DEPLOYMENT, f"model-{kind.lower()}", make, as_type=CONTROLLERS[kind], template=MODEL)


def first_container(change):
    return lambda pod: change(pod["containers"][0])


ESCALATIONS = {
    "containers-restricted": first_container(setter("securityContext.privileged", True)),
    "containers-drop-all-capabilities": first_container(setter("securityContext.capabilities.add", ["SYS_ADMIN"])),
    "containers-read-only-root-filesystem": first_container(setter("securityContext.readOnlyRootFilesystem", False)),
    "pods-no-host-namespaces": setter("hostNetwork", True),
    "pods-no-host-paths": lambda pod: pod["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
    "images-from-acr-pinned": first_container(lambda c: c.update(image="docker.io/library/python:3.11")),
    "platform-images-pinned-by-digest": first_container(lambda c: c.update(image=c["image"].split("@")[0] + ":3.11")),
    "model-resources-and-probes": first_container(lambda c: c.pop("readinessProbe")),
    "scoring-timeout-below-worker-timeout": first_container(lambda c: c.update(
        env=[{"name": "SCORING_TIMEOUT_MS", "value": "300000"}, {"name": "WORKER_TIMEOUT", "value": "300"}])),
}


def test_every_controller_kind_has_a_pod_spec_path():
    assert {token.rsplit(":", 1)[1] for token in POD_SPEC_PATHS} == {"Deployment", *CONTROLLERS}
    assert pod_spec("kubernetes:batch/v1:CronJob", {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}) == {"containers": []}
    assert pod_spec("kubernetes:core/v1:Pod", {"spec": {"hostPID": True}}) == {"hostPID": True}
    assert pod_spec("kubernetes:core/v1:Service", {"spec": {}}) is None


@pytest.mark.parametrize("kind", sorted(CONTROLLERS))
def test_a_hardened_pod_passes_the_pod_rules_in_any_controller(stacks, kind):
    assert not (POD_RULES | set(ESCALATIONS)) & _violations(as_controller(kind)(stacks["dev"]), only=POD_RULES | set(ESCALATIONS))


@pytest.mark.parametrize("rule", sorted(ESCALATIONS))
@pytest.mark.parametrize("kind", sorted(CONTROLLERS))
def test_every_controller_kind_is_checked(stacks, kind, rule):
    assert rule in _violations(as_controller(kind, ESCALATIONS[rule])(stacks["dev"]), only={rule})


# --------------------------------------------------------------------------- the reviewed exception


def test_the_device_plugin_is_the_one_reviewed_exception():
    [reviewed] = REVIEWED_WORKLOADS
    assert (reviewed.kind, reviewed.namespace, reviewed.name) == ("DaemonSet", "kube-system", "nvidia-device-plugin")
    assert reviewed.host_paths == ("/var/lib/kubelet/device-plugins",)
    [(name, plugin)] = reviewed.containers.items()
    assert (name, plugin.image, plugin.run_as_root, plugin.writable_root_filesystem) == ("nvidia-device-plugin", PLUGIN_IMAGE, True, True)
    assert "@" not in plugin.image and not plugin.image.endswith(":latest")


def test_the_program_runs_exactly_the_reviewed_device_plugin(stacks):
    """prod's DaemonSet is what was reviewed (a version bump in cluster_profiles fails until re-reviewed)."""
    [plugin] = [r for r in stacks["prod"] if r.type == DAEMONSET]
    pod = plugin.inputs["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [PLUGIN_IMAGE]
    assert not EXCEPTED & _violations(stacks["prod"], only=EXCEPTED)


@pytest.mark.parametrize("change", [
    setter("metadata.name", "gpu-helper"),
    setter("metadata.namespace", "models"),
], ids=["renamed", "other-namespace"])
def test_another_daemonset_gets_no_exception(stacks, change):
    assert EXCEPTED <= _violations(edit(DAEMONSET, change)(stacks["prod"]), only=EXCEPTED)


def test_another_image_loses_every_reviewed_privilege(stacks):
    bumped = edit(DAEMONSET, container(setter("image", "nvcr.io/nvidia/k8s-device-plugin:v0.18.1")))(stacks["prod"])
    assert {"images-from-acr-pinned", "containers-restricted", "containers-read-only-root-filesystem"} <= _violations(bumped, only=EXCEPTED)


def test_a_sidecar_in_the_reviewed_daemonset_gets_no_exception(stacks):
    def sidecar(props):
        pod = props["spec"]["template"]["spec"]
        pod["containers"].append({**copy.deepcopy(pod["containers"][0]), "name": "sidecar"})

    assert {"images-from-acr-pinned", "containers-restricted", "containers-read-only-root-filesystem"} <= _violations(
        edit(DAEMONSET, sidecar)(stacks["prod"]), only=EXCEPTED)


@pytest.mark.parametrize(("rule", "change"), [
    ("containers-restricted", container(setter("securityContext.privileged", True))),
    ("containers-restricted", container(setter("securityContext.allowPrivilegeEscalation", True))),
    ("containers-drop-all-capabilities", container(setter("securityContext.capabilities.add", ["SYS_ADMIN"]))),
    ("containers-drop-all-capabilities", container(setter("securityContext.capabilities", None))),
    ("pods-no-host-namespaces", setter("spec.template.spec.hostPID", True)),
    ("pods-no-host-paths", setter("spec.template.spec.volumes.0.hostPath.path", "/var/lib/kubelet")),
    ("images-from-acr-pinned", container(setter("image", "nvcr.io/nvidia/k8s-device-plugin:latest"))),
])
def test_anything_beyond_the_reviewed_privileges_fails(stacks, rule, change):
    assert rule not in _violations(stacks["prod"], only={rule})
    assert rule in _violations(edit(DAEMONSET, change)(stacks["prod"]), only={rule})


# --------------------------------------------------------------------------- RBAC and soft delete details


@pytest.mark.parametrize(("rule", "fails"), [
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, True),  # every Secret by name
    ({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["model-diabetes-keys"], "verbs": ["get"]}, False),
    ({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["model-diabetes-keys"], "verbs": ["get", "watch"]}, True),
    ({"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["list"]}, True),
    ({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}, False),
])
@pytest.mark.parametrize("role_type", [ROLE, CLUSTER_ROLE])
def test_secrets_are_read_only_by_name(stacks, rule, fails, role_type):
    def make(props):
        props["metadata"] = {"name": "reader", **({"namespace": "models"} if role_type == ROLE else {})}
        props["kind"] = role_type.rsplit(":", 1)[1]
        props["rules"] = [rule]
        return props

    found = _violations(add(ROLE, "reader", make, as_type=role_type)(stacks["dev"]), only={"rbac-secrets-by-name"})
    assert ("rbac-secrets-by-name" in found) is fails


def test_the_router_roles_read_secrets_by_name_only(stacks):
    roles = [r for r in stacks["dev"] if r.type == ROLE]
    secret_rules = [rule for r in roles for rule in r.inputs["rules"] if "secrets" in rule["resources"]]
    assert secret_rules and all(rule["verbs"] == ["get"] and rule["resourceNames"] for rule in secret_rules)


@pytest.mark.parametrize("change", [
    lambda resources: [r for r in resources if r.type != BLOB_SERVICE],
    edit(BLOB_SERVICE, setter("containerDeleteRetentionPolicy", None)),
    edit(BLOB_SERVICE, setter("deleteRetentionPolicy.days", 6)),
], ids=["no-blob-service", "no-container-soft-delete", "six-days"])
def test_soft_delete_needs_both_policies_for_a_week(stacks, change):
    assert "storage-blob-soft-delete" not in _violations(stacks["dev"], only={"storage-blob-soft-delete"})
    assert "storage-blob-soft-delete" in _violations(change(stacks["dev"]), only={"storage-blob-soft-delete"})


def test_a_tainted_or_accelerator_pool_does_not_reserve_the_system_pool(stacks):
    """prod's GPU pool is tainted: workloads cannot go there, so the untainted system pool is not a violation;
    adding a general-purpose pool (as the program's output with one) makes it one."""
    assert "aks-system-pool-critical-addons-only" not in _violations(stacks["prod"], only={"aks-system-pool-critical-addons-only"})
    untainted = edit("azure-native:containerservice:AgentPool", setter("nodeTaints", None))(stacks["prod"])
    assert "aks-system-pool-critical-addons-only" in _violations(untainted, only={"aks-system-pool-critical-addons-only"})
