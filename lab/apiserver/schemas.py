"""Structural schemas of the built-in kinds, in OpenAPI v2 form, as the real server publishes them.

One table serves two purposes: openapi.py publishes it (so `kubectl apply` can validate and build patches) and
patch.py reads the `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` extensions from it (so a
strategic merge patch merges lists exactly as kubectl expects). Only the fields users meet are spelled out;
deep or rarely used parts are left as arbitrary objects, which accept anything.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

PREFIX = "#/definitions/"


def ref(name: str) -> Schema:
    return {"$ref": PREFIX + name}


def string(description: str = "") -> Schema:
    s: Schema = {"type": "string"}
    if description:
        s["description"] = description
    return s


def int32() -> Schema:
    return {"type": "integer", "format": "int32"}


def int64() -> Schema:
    return {"type": "integer", "format": "int64"}


def boolean() -> Schema:
    return {"type": "boolean"}


def string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def any_value() -> Schema:
    """Arbitrary JSON (kubectl's client-side validation accepts every field below it)."""
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def array(items: Schema, merge_key: str | None = None, strategy: str | None = None) -> Schema:
    s: Schema = {"type": "array", "items": items}
    if merge_key:
        s["x-kubernetes-patch-merge-key"] = merge_key
    if strategy:
        s["x-kubernetes-patch-strategy"] = strategy
    return s


def obj(
    description: str,
    properties: dict[str, Schema],
    required: list[str] | None = None,
    gvk: tuple[str, str, str] | None = None,
    strategy: str | None = None,
) -> Schema:
    s: Schema = {"description": description, "type": "object", "properties": properties}
    if required:
        s["required"] = required
    if gvk:
        s["x-kubernetes-group-version-kind"] = [{"group": gvk[0], "version": gvk[1], "kind": gvk[2]}]
    if strategy:
        s["x-kubernetes-patch-strategy"] = strategy
    return s


def with_strategy(schema: Schema, strategy: str) -> Schema:
    return {**schema, "x-kubernetes-patch-strategy": strategy}


INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
LABEL_SELECTOR = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
CONDITION = "io.k8s.apimachinery.pkg.apis.meta.v1.Condition"
CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."


def _type_meta() -> dict[str, Schema]:
    return {
        "apiVersion": string("APIVersion defines the versioned schema of this representation of an object."),
        "kind": string("Kind is a string value representing the REST resource this object represents."),
        "metadata": ref(META),
    }


def _top(
    description: str, gvk: tuple[str, str, str], extra: dict[str, Schema], required: list[str] | None = None
) -> Schema:
    return obj(description, {**_type_meta(), **extra}, required=required, gvk=gvk)


def _core_definitions() -> dict[str, Schema]:
    d: dict[str, Schema] = {}
    d[INT_OR_STRING] = {"type": "string", "format": "int-or-string"}
    d[QUANTITY] = {"type": "string"}
    d[TIME] = {"type": "string", "format": "date-time"}
    d[MICRO_TIME] = {"type": "string", "format": "date-time"}
    d["io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"] = obj(
        "OwnerReference contains enough information to let you identify an owning object.",
        {
            "apiVersion": string(),
            "kind": string(),
            "name": string(),
            "uid": string(),
            "controller": boolean(),
            "blockOwnerDeletion": boolean(),
        },
        required=["apiVersion", "kind", "name", "uid"],
    )
    d["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"] = any_value()
    d[META] = obj(
        "ObjectMeta is metadata that all persisted resources must have.",
        {
            "name": string(),
            "generateName": string(),
            "namespace": string(),
            "selfLink": string(),
            "uid": string(),
            "resourceVersion": string(),
            "generation": int64(),
            "creationTimestamp": ref(TIME),
            "deletionTimestamp": ref(TIME),
            "deletionGracePeriodSeconds": int64(),
            "labels": string_map(),
            "annotations": string_map(),
            "ownerReferences": array(
                ref("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"), merge_key="uid", strategy="merge"
            ),
            "finalizers": array(string(), strategy="merge"),
            "managedFields": array(ref("io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry")),
        },
    )
    d[LIST_META] = obj(
        "ListMeta describes metadata that synthetic resources must have.",
        {
            "continue": string(),
            "remainingItemCount": int64(),
            "resourceVersion": string(),
            "selfLink": string(),
        },
    )
    d["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"] = obj(
        "A label selector requirement.",
        {"key": string(), "operator": string(), "values": array(string())},
        required=["key", "operator"],
    )
    d[LABEL_SELECTOR] = obj(
        "A label selector is a label query over a set of resources.",
        {
            "matchExpressions": array(ref("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement")),
            "matchLabels": string_map(),
        },
    )
    d[CONDITION] = obj(
        "Condition contains details for one aspect of the current state of this API Resource.",
        {
            "lastTransitionTime": ref(TIME),
            "message": string(),
            "observedGeneration": int64(),
            "reason": string(),
            "status": string(),
            "type": string(),
        },
        required=["lastTransitionTime", "message", "reason", "status", "type"],
    )

    # --- Service ---
    d[CORE + "ServicePort"] = obj(
        "ServicePort contains information on service's port.",
        {
            "appProtocol": string(),
            "name": string(),
            "nodePort": int32(),
            "port": int32(),
            "protocol": string(),
            "targetPort": ref(INT_OR_STRING),
        },
        required=["port"],
    )
    d[CORE + "ClientIPConfig"] = obj("ClientIPConfig", {"timeoutSeconds": int32()})
    d[CORE + "SessionAffinityConfig"] = obj(
        "SessionAffinityConfig represents the configurations of session affinity.",
        {"clientIP": ref(CORE + "ClientIPConfig")},
    )
    d[CORE + "ServiceSpec"] = obj(
        "ServiceSpec describes the attributes that a user creates on a service.",
        {
            "allocateLoadBalancerNodePorts": boolean(),
            "clusterIP": string(),
            "clusterIPs": array(string()),
            "externalIPs": array(string()),
            "externalName": string(),
            "externalTrafficPolicy": string(),
            "healthCheckNodePort": int32(),
            "internalTrafficPolicy": string(),
            "ipFamilies": array(string()),
            "ipFamilyPolicy": string(),
            "loadBalancerClass": string(),
            "loadBalancerIP": string(),
            "loadBalancerSourceRanges": array(string()),
            "ports": array(ref(CORE + "ServicePort"), merge_key="port", strategy="merge"),
            "publishNotReadyAddresses": boolean(),
            "selector": string_map(),
            "sessionAffinity": string(),
            "sessionAffinityConfig": ref(CORE + "SessionAffinityConfig"),
            "trafficDistribution": string(),
            "type": string(),
        },
    )
    d[CORE + "PortStatus"] = obj(
        "PortStatus",
        {"error": string(), "port": int32(), "protocol": string()},
        required=["port", "protocol"],
    )
    d[CORE + "LoadBalancerIngress"] = obj(
        "LoadBalancerIngress represents the status of a load-balancer ingress point.",
        {
            "hostname": string(),
            "ip": string(),
            "ipMode": string(),
            "ports": array(ref(CORE + "PortStatus")),
        },
    )
    d[CORE + "LoadBalancerStatus"] = obj(
        "LoadBalancerStatus represents the status of a load-balancer.",
        {"ingress": array(ref(CORE + "LoadBalancerIngress"))},
    )
    d[CORE + "ServiceStatus"] = obj(
        "ServiceStatus represents the current status of a service.",
        {
            "conditions": array(ref(CONDITION), merge_key="type", strategy="merge"),
            "loadBalancer": ref(CORE + "LoadBalancerStatus"),
        },
    )
    d[CORE + "Service"] = _top(
        "Service is a named abstraction of software service.",
        ("", "v1", "Service"),
        {"spec": ref(CORE + "ServiceSpec"), "status": ref(CORE + "ServiceStatus")},
    )

    # --- Pod and its parts ---
    d[CORE + "ContainerPort"] = obj(
        "ContainerPort represents a network port in a single container.",
        {
            "containerPort": int32(),
            "hostIP": string(),
            "hostPort": int32(),
            "name": string(),
            "protocol": string(),
        },
        required=["containerPort"],
    )
    d[CORE + "EnvVar"] = obj(
        "EnvVar represents an environment variable present in a Container.",
        {"name": string(), "value": string(), "valueFrom": any_value()},
        required=["name"],
    )
    d[CORE + "VolumeMount"] = obj(
        "VolumeMount describes a mounting of a Volume within a container.",
        {
            "mountPath": string(),
            "mountPropagation": string(),
            "name": string(),
            "readOnly": boolean(),
            "recursiveReadOnly": string(),
            "subPath": string(),
            "subPathExpr": string(),
        },
        required=["name", "mountPath"],
    )
    d[CORE + "VolumeDevice"] = obj(
        "volumeDevice describes a mapping of a raw block device within a container.",
        {"devicePath": string(), "name": string()},
        required=["name", "devicePath"],
    )
    d[CORE + "ResourceRequirements"] = obj(
        "ResourceRequirements describes the compute resource requirements.",
        {
            "claims": array(any_value()),
            "limits": {"type": "object", "additionalProperties": ref(QUANTITY)},
            "requests": {"type": "object", "additionalProperties": ref(QUANTITY)},
        },
    )
    container_props: dict[str, Schema] = {
        "args": array(string()),
        "command": array(string()),
        "env": array(ref(CORE + "EnvVar"), merge_key="name", strategy="merge"),
        "envFrom": array(any_value()),
        "image": string(),
        "imagePullPolicy": string(),
        "lifecycle": any_value(),
        "livenessProbe": any_value(),
        "name": string(),
        "ports": array(ref(CORE + "ContainerPort"), merge_key="containerPort", strategy="merge"),
        "readinessProbe": any_value(),
        "resizePolicy": array(any_value()),
        "resources": ref(CORE + "ResourceRequirements"),
        "restartPolicy": string(),
        "securityContext": any_value(),
        "startupProbe": any_value(),
        "stdin": boolean(),
        "stdinOnce": boolean(),
        "terminationMessagePath": string(),
        "terminationMessagePolicy": string(),
        "tty": boolean(),
        "volumeDevices": array(ref(CORE + "VolumeDevice"), merge_key="devicePath", strategy="merge"),
        "volumeMounts": array(ref(CORE + "VolumeMount"), merge_key="mountPath", strategy="merge"),
        "workingDir": string(),
    }
    d[CORE + "Container"] = obj(
        "A single application container that you want to run within a pod.",
        container_props,
        required=["name"],
    )
    d[CORE + "EphemeralContainer"] = obj(
        "An EphemeralContainer is a temporary container.",
        {**container_props, "targetContainerName": string()},
        required=["name"],
    )
    d[CORE + "LocalObjectReference"] = obj("LocalObjectReference", {"name": string()})
    volume_sources = [
        *("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi"),
        *("downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk"),
        *("gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim"),
        *("photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "secret"),
        *("storageos", "vsphereVolume"),
    ]
    d[CORE + "Volume"] = obj(
        "Volume represents a named volume in a pod that may be accessed by any container in the pod.",
        {"name": string(), **{source: any_value() for source in volume_sources}},
        required=["name"],
    )
    d[CORE + "Toleration"] = obj(
        "The pod this Toleration is attached to tolerates any taint that matches the triple.",
        {
            "effect": string(),
            "key": string(),
            "operator": string(),
            "tolerationSeconds": int64(),
            "value": string(),
        },
    )
    d[CORE + "HostAlias"] = obj(
        "HostAlias holds the mapping between IP and hostnames.",
        {"hostnames": array(string()), "ip": string()},
        required=["ip"],
    )
    d[CORE + "TopologySpreadConstraint"] = any_value()
    d[CORE + "PodSpec"] = obj(
        "PodSpec is a description of a pod.",
        {
            "activeDeadlineSeconds": int64(),
            "affinity": any_value(),
            "automountServiceAccountToken": boolean(),
            "containers": array(ref(CORE + "Container"), merge_key="name", strategy="merge"),
            "dnsConfig": any_value(),
            "dnsPolicy": string(),
            "enableServiceLinks": boolean(),
            "ephemeralContainers": array(
                ref(CORE + "EphemeralContainer"), merge_key="name", strategy="merge"
            ),
            "hostAliases": array(ref(CORE + "HostAlias"), merge_key="ip", strategy="merge"),
            "hostIPC": boolean(),
            "hostNetwork": boolean(),
            "hostPID": boolean(),
            "hostUsers": boolean(),
            "hostname": string(),
            "imagePullSecrets": array(ref(CORE + "LocalObjectReference"), merge_key="name", strategy="merge"),
            "initContainers": array(ref(CORE + "Container"), merge_key="name", strategy="merge"),
            "nodeName": string(),
            "nodeSelector": string_map(),
            "os": any_value(),
            "overhead": {"type": "object", "additionalProperties": ref(QUANTITY)},
            "preemptionPolicy": string(),
            "priority": int32(),
            "priorityClassName": string(),
            "readinessGates": array(any_value()),
            "resourceClaims": array(any_value(), merge_key="name", strategy="merge,retainKeys"),
            "resources": ref(CORE + "ResourceRequirements"),
            "restartPolicy": string(),
            "runtimeClassName": string(),
            "schedulerName": string(),
            "schedulingGates": array(any_value(), merge_key="name", strategy="merge"),
            "securityContext": any_value(),
            "serviceAccount": string(),
            "serviceAccountName": string(),
            "setHostnameAsFQDN": boolean(),
            "shareProcessNamespace": boolean(),
            "subdomain": string(),
            "terminationGracePeriodSeconds": int64(),
            "tolerations": array(ref(CORE + "Toleration")),
            "topologySpreadConstraints": array(
                ref(CORE + "TopologySpreadConstraint"), merge_key="topologyKey", strategy="merge"
            ),
            "volumes": array(ref(CORE + "Volume"), merge_key="name", strategy="merge,retainKeys"),
        },
        required=["containers"],
    )
    d[CORE + "PodCondition"] = obj(
        "PodCondition contains details for the current condition of this pod.",
        {
            "lastProbeTime": ref(TIME),
            "lastTransitionTime": ref(TIME),
            "message": string(),
            "reason": string(),
            "status": string(),
            "type": string(),
        },
        required=["type", "status"],
    )
    d[CORE + "PodIP"] = obj("PodIP represents a single IP address allocated to the pod.", {"ip": string()})
    d[CORE + "HostIP"] = obj("HostIP represents a single IP address allocated to the host.", {"ip": string()})
    d[CORE + "PodStatus"] = obj(
        "PodStatus represents information about the status of a pod.",
        {
            "conditions": array(ref(CORE + "PodCondition"), merge_key="type", strategy="merge"),
            "containerStatuses": array(any_value()),
            "ephemeralContainerStatuses": array(any_value()),
            "hostIP": string(),
            "hostIPs": array(ref(CORE + "HostIP"), merge_key="ip", strategy="merge"),
            "initContainerStatuses": array(any_value()),
            "message": string(),
            "nominatedNodeName": string(),
            "observedGeneration": int64(),
            "phase": string(),
            "podIP": string(),
            "podIPs": array(ref(CORE + "PodIP"), merge_key="ip", strategy="merge"),
            "qosClass": string(),
            "reason": string(),
            "resize": string(),
            "resourceClaimStatuses": array(any_value(), merge_key="name", strategy="merge,retainKeys"),
            "startTime": ref(TIME),
        },
    )
    d[CORE + "Pod"] = _top(
        "Pod is a collection of containers that can run on a host.",
        ("", "v1", "Pod"),
        {"spec": ref(CORE + "PodSpec"), "status": ref(CORE + "PodStatus")},
    )
    d[CORE + "PodTemplateSpec"] = obj(
        "PodTemplateSpec describes the data a pod should have when created from a template",
        {"metadata": ref(META), "spec": ref(CORE + "PodSpec")},
    )

    # --- Node ---
    d[CORE + "NodeCondition"] = obj(
        "NodeCondition contains condition information for a node.",
        {
            "lastHeartbeatTime": ref(TIME),
            "lastTransitionTime": ref(TIME),
            "message": string(),
            "reason": string(),
            "status": string(),
            "type": string(),
        },
        required=["type", "status"],
    )
    d[CORE + "NodeAddress"] = obj(
        "NodeAddress contains information for the node's address.",
        {"address": string(), "type": string()},
        required=["type", "address"],
    )
    d[CORE + "NodeSystemInfo"] = obj(
        "NodeSystemInfo is a set of ids/uuids to uniquely identify the node.",
        {
            "architecture": string(),
            "bootID": string(),
            "containerRuntimeVersion": string(),
            "kernelVersion": string(),
            "kubeProxyVersion": string(),
            "kubeletVersion": string(),
            "machineID": string(),
            "operatingSystem": string(),
            "osImage": string(),
            "swap": any_value(),
            "systemUUID": string(),
        },
    )
    d[CORE + "Taint"] = obj(
        "The node this Taint is attached to has the effect on any pod that does not tolerate the Taint.",
        {"effect": string(), "key": string(), "timeAdded": ref(TIME), "value": string()},
        required=["key", "effect"],
    )
    d[CORE + "NodeSpec"] = obj(
        "NodeSpec describes the attributes that a node is created with.",
        {
            "configSource": any_value(),
            "externalID": string(),
            "podCIDR": string(),
            "podCIDRs": array(string(), strategy="merge"),
            "providerID": string(),
            "taints": array(ref(CORE + "Taint")),
            "unschedulable": boolean(),
        },
    )
    d[CORE + "NodeStatus"] = obj(
        "NodeStatus is information about the current status of a node.",
        {
            "addresses": array(ref(CORE + "NodeAddress"), merge_key="type", strategy="merge"),
            "allocatable": {"type": "object", "additionalProperties": ref(QUANTITY)},
            "capacity": {"type": "object", "additionalProperties": ref(QUANTITY)},
            "conditions": array(ref(CORE + "NodeCondition"), merge_key="type", strategy="merge"),
            "config": any_value(),
            "daemonEndpoints": any_value(),
            "features": any_value(),
            "images": array(any_value()),
            "nodeInfo": ref(CORE + "NodeSystemInfo"),
            "phase": string(),
            "runtimeHandlers": array(any_value()),
            "volumesAttached": array(any_value()),
            "volumesInUse": array(string()),
        },
    )
    d[CORE + "Node"] = _top(
        "Node is a worker node in Kubernetes.",
        ("", "v1", "Node"),
        {"spec": ref(CORE + "NodeSpec"), "status": ref(CORE + "NodeStatus")},
    )

    # --- simple core kinds ---
    d[CORE + "NamespaceSpec"] = obj("NamespaceSpec", {"finalizers": array(string())})
    d[CORE + "NamespaceStatus"] = obj(
        "NamespaceStatus is information about the current status of a Namespace.",
        {
            "conditions": array(any_value(), merge_key="type", strategy="merge"),
            "phase": string(),
        },
    )
    d[CORE + "Namespace"] = _top(
        "Namespace provides a scope for Names.",
        ("", "v1", "Namespace"),
        {"spec": ref(CORE + "NamespaceSpec"), "status": ref(CORE + "NamespaceStatus")},
    )
    d[CORE + "ConfigMap"] = _top(
        "ConfigMap holds configuration data for pods to consume.",
        ("", "v1", "ConfigMap"),
        {
            "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
            "data": string_map(),
            "immutable": boolean(),
        },
    )
    d[CORE + "Secret"] = _top(
        "Secret holds secret data of a certain type.",
        ("", "v1", "Secret"),
        {
            "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
            "immutable": boolean(),
            "stringData": string_map(),
            "type": string(),
        },
    )
    d[CORE + "ObjectReference"] = obj(
        "ObjectReference contains enough information to let you inspect or modify the referred object.",
        {
            "apiVersion": string(),
            "fieldPath": string(),
            "kind": string(),
            "name": string(),
            "namespace": string(),
            "resourceVersion": string(),
            "uid": string(),
        },
    )
    d[CORE + "ServiceAccount"] = _top(
        "ServiceAccount binds together a name, a principal and a set of secrets.",
        ("", "v1", "ServiceAccount"),
        {
            "automountServiceAccountToken": boolean(),
            "imagePullSecrets": array(ref(CORE + "LocalObjectReference")),
            "secrets": array(ref(CORE + "ObjectReference"), merge_key="name", strategy="merge"),
        },
    )
    d[CORE + "EndpointAddress"] = obj(
        "EndpointAddress is a tuple that describes single IP address.",
        {
            "hostname": string(),
            "ip": string(),
            "nodeName": string(),
            "targetRef": ref(CORE + "ObjectReference"),
        },
        required=["ip"],
    )
    d[CORE + "EndpointPort"] = obj(
        "EndpointPort is a tuple that describes a single port.",
        {"appProtocol": string(), "name": string(), "port": int32(), "protocol": string()},
        required=["port"],
    )
    d[CORE + "EndpointSubset"] = obj(
        "EndpointSubset is a group of addresses with a common set of ports.",
        {
            "addresses": array(ref(CORE + "EndpointAddress")),
            "notReadyAddresses": array(ref(CORE + "EndpointAddress")),
            "ports": array(ref(CORE + "EndpointPort")),
        },
    )
    d[CORE + "Endpoints"] = _top(
        "Endpoints is a collection of endpoints that implement the actual service.",
        ("", "v1", "Endpoints"),
        {"subsets": array(ref(CORE + "EndpointSubset"))},
    )
    d[CORE + "EventSource"] = obj(
        "EventSource contains information for an event.", {"component": string(), "host": string()}
    )
    d[CORE + "Event"] = _top(
        "Event is a report of an event somewhere in the cluster.",
        ("", "v1", "Event"),
        {
            "action": string(),
            "count": int32(),
            "eventTime": ref(MICRO_TIME),
            "firstTimestamp": ref(TIME),
            "involvedObject": ref(CORE + "ObjectReference"),
            "lastTimestamp": ref(TIME),
            "message": string(),
            "reason": string(),
            "related": ref(CORE + "ObjectReference"),
            "reportingComponent": string(),
            "reportingInstance": string(),
            "series": any_value(),
            "source": ref(CORE + "EventSource"),
            "type": string(),
        },
        required=["metadata", "involvedObject"],
    )
    return d


def _apps_definitions() -> dict[str, Schema]:
    d: dict[str, Schema] = {}
    d[APPS + "RollingUpdateDeployment"] = obj(
        "Spec to control the desired behavior of rolling update.",
        {"maxSurge": ref(INT_OR_STRING), "maxUnavailable": ref(INT_OR_STRING)},
    )
    d[APPS + "DeploymentStrategy"] = obj(
        "DeploymentStrategy describes how to replace existing pods with new ones.",
        {"rollingUpdate": ref(APPS + "RollingUpdateDeployment"), "type": string()},
    )
    d[APPS + "DeploymentSpec"] = obj(
        "DeploymentSpec is the specification of the desired behavior of the Deployment.",
        {
            "minReadySeconds": int32(),
            "paused": boolean(),
            "progressDeadlineSeconds": int32(),
            "replicas": int32(),
            "revisionHistoryLimit": int32(),
            "selector": ref(LABEL_SELECTOR),
            "strategy": with_strategy(ref(APPS + "DeploymentStrategy"), "retainKeys"),
            "template": ref(CORE + "PodTemplateSpec"),
        },
        required=["selector", "template"],
    )
    d[APPS + "DeploymentCondition"] = obj(
        "DeploymentCondition describes the state of a deployment at a certain point.",
        {
            "lastTransitionTime": ref(TIME),
            "lastUpdateTime": ref(TIME),
            "message": string(),
            "reason": string(),
            "status": string(),
            "type": string(),
        },
        required=["type", "status"],
    )
    d[APPS + "DeploymentStatus"] = obj(
        "DeploymentStatus is the most recently observed status of the Deployment.",
        {
            "availableReplicas": int32(),
            "collisionCount": int32(),
            "conditions": array(ref(APPS + "DeploymentCondition"), merge_key="type", strategy="merge"),
            "observedGeneration": int64(),
            "readyReplicas": int32(),
            "replicas": int32(),
            "terminatingReplicas": int32(),
            "unavailableReplicas": int32(),
            "updatedReplicas": int32(),
        },
    )
    d[APPS + "Deployment"] = _top(
        "Deployment enables declarative updates for Pods and ReplicaSets.",
        ("apps", "v1", "Deployment"),
        {"spec": ref(APPS + "DeploymentSpec"), "status": ref(APPS + "DeploymentStatus")},
    )
    d[APPS + "RollingUpdateDaemonSet"] = obj(
        "Spec to control the desired behavior of daemon set rolling update.",
        {"maxSurge": ref(INT_OR_STRING), "maxUnavailable": ref(INT_OR_STRING)},
    )
    d[APPS + "DaemonSetUpdateStrategy"] = obj(
        "DaemonSetUpdateStrategy is a struct used to control the update strategy for a DaemonSet.",
        {"rollingUpdate": ref(APPS + "RollingUpdateDaemonSet"), "type": string()},
    )
    d[APPS + "DaemonSetSpec"] = obj(
        "DaemonSetSpec is the specification of a daemon set.",
        {
            "minReadySeconds": int32(),
            "revisionHistoryLimit": int32(),
            "selector": ref(LABEL_SELECTOR),
            "template": ref(CORE + "PodTemplateSpec"),
            "updateStrategy": ref(APPS + "DaemonSetUpdateStrategy"),
        },
        required=["selector", "template"],
    )
    d[APPS + "DaemonSetStatus"] = obj(
        "DaemonSetStatus represents the current status of a daemon set.",
        {
            "collisionCount": int32(),
            "conditions": array(any_value(), merge_key="type", strategy="merge"),
            "currentNumberScheduled": int32(),
            "desiredNumberScheduled": int32(),
            "numberAvailable": int32(),
            "numberMisscheduled": int32(),
            "numberReady": int32(),
            "numberUnavailable": int32(),
            "observedGeneration": int64(),
            "updatedNumberScheduled": int32(),
        },
    )
    d[APPS + "DaemonSet"] = _top(
        "DaemonSet represents the configuration of a daemon set.",
        ("apps", "v1", "DaemonSet"),
        {"spec": ref(APPS + "DaemonSetSpec"), "status": ref(APPS + "DaemonSetStatus")},
    )
    return d


def _other_definitions() -> dict[str, Schema]:
    d: dict[str, Schema] = {}
    disc = "io.k8s.api.discovery.v1."
    d[disc + "EndpointConditions"] = obj(
        "EndpointConditions represents the current condition of an endpoint.",
        {"ready": boolean(), "serving": boolean(), "terminating": boolean()},
    )
    d[disc + "Endpoint"] = obj(
        "Endpoint represents a single logical backend implementing a service.",
        {
            "addresses": array(string()),
            "conditions": ref(disc + "EndpointConditions"),
            "deprecatedTopology": string_map(),
            "hints": any_value(),
            "hostname": string(),
            "nodeName": string(),
            "targetRef": ref(CORE + "ObjectReference"),
            "zone": string(),
        },
        required=["addresses"],
    )
    d[disc + "EndpointPort"] = obj(
        "EndpointPort represents a Port used by an EndpointSlice",
        {"appProtocol": string(), "name": string(), "port": int32(), "protocol": string()},
    )
    d[disc + "EndpointSlice"] = _top(
        "EndpointSlice represents a subset of the endpoints that implement a service.",
        ("discovery.k8s.io", "v1", "EndpointSlice"),
        {
            "addressType": string(),
            "endpoints": array(ref(disc + "Endpoint")),
            "ports": array(ref(disc + "EndpointPort")),
        },
        required=["addressType", "endpoints"],
    )
    coord = "io.k8s.api.coordination.v1."
    d[coord + "LeaseSpec"] = obj(
        "LeaseSpec is a specification of a Lease.",
        {
            "acquireTime": ref(MICRO_TIME),
            "holderIdentity": string(),
            "leaseDurationSeconds": int32(),
            "leaseTransitions": int32(),
            "preferredHolder": string(),
            "renewTime": ref(MICRO_TIME),
            "strategy": string(),
        },
    )
    d[coord + "Lease"] = _top(
        "Lease defines a lease concept.",
        ("coordination.k8s.io", "v1", "Lease"),
        {"spec": ref(coord + "LeaseSpec")},
    )
    ev = "io.k8s.api.events.v1."
    d[ev + "Event"] = _top(
        "Event is a report of an event somewhere in the cluster.",
        ("events.k8s.io", "v1", "Event"),
        {
            "action": string(),
            "deprecatedCount": int32(),
            "deprecatedFirstTimestamp": ref(TIME),
            "deprecatedLastTimestamp": ref(TIME),
            "deprecatedSource": ref(CORE + "EventSource"),
            "eventTime": ref(MICRO_TIME),
            "note": string(),
            "reason": string(),
            "regarding": ref(CORE + "ObjectReference"),
            "related": ref(CORE + "ObjectReference"),
            "reportingController": string(),
            "reportingInstance": string(),
            "series": any_value(),
            "type": string(),
        },
        required=["eventTime"],
    )
    rbac = "io.k8s.api.rbac.v1."
    d[rbac + "PolicyRule"] = obj(
        "PolicyRule holds information that describes a policy rule.",
        {
            "apiGroups": array(string()),
            "nonResourceURLs": array(string()),
            "resourceNames": array(string()),
            "resources": array(string()),
            "verbs": array(string()),
        },
        required=["verbs"],
    )
    d[rbac + "RoleRef"] = obj(
        "RoleRef contains information that points to the role being used",
        {"apiGroup": string(), "kind": string(), "name": string()},
        required=["apiGroup", "kind", "name"],
    )
    d[rbac + "Subject"] = obj(
        "Subject contains a reference to the object or user identities a role binding applies to.",
        {"apiGroup": string(), "kind": string(), "name": string(), "namespace": string()},
        required=["kind", "name"],
    )
    d[rbac + "Role"] = _top(
        "Role is a namespaced, logical grouping of PolicyRules.",
        ("rbac.authorization.k8s.io", "v1", "Role"),
        {"rules": array(ref(rbac + "PolicyRule"))},
    )
    d[rbac + "ClusterRole"] = _top(
        "ClusterRole is a cluster level, logical grouping of PolicyRules.",
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        {"aggregationRule": any_value(), "rules": array(ref(rbac + "PolicyRule"))},
    )
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        d[rbac + kind] = _top(
            f"{kind} references a role, but does not contain it.",
            ("rbac.authorization.k8s.io", "v1", kind),
            {"roleRef": ref(rbac + "RoleRef"), "subjects": array(ref(rbac + "Subject"))},
            required=["roleRef"],
        )
    ext = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
    d[ext + "CustomResourceDefinition"] = _top(
        "CustomResourceDefinition represents a resource that should be exposed on the API server.",
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        {"spec": any_value(), "status": any_value()},
        required=["spec"],
    )
    return d


def _build() -> dict[str, Schema]:
    d = _core_definitions()
    d.update(_apps_definitions())
    d.update(_other_definitions())
    return d


DEFINITIONS: dict[str, Schema] = _build()

# (group, version, kind) -> definition name, for every kind published with x-kubernetes-group-version-kind.
ROOTS: dict[tuple[str, str, str], str] = {
    (g["group"], g["version"], g["kind"]): name
    for name, schema in DEFINITIONS.items()
    for g in schema.get("x-kubernetes-group-version-kind", [])
}


def root_for(group: str, kind: str) -> str | None:
    """The definition name of a built-in kind (any version we serve), or None for unknown/custom kinds."""
    for (g, _v, k), name in ROOTS.items():
        if g == group and k == kind:
            return name
    return None


def resolve(schema: Schema | None) -> Schema | None:
    """Follow a $ref to its definition (one level; our definitions never chain refs)."""
    if schema is None:
        return None
    target = schema.get("$ref")
    if isinstance(target, str) and target.startswith(PREFIX):
        resolved = DEFINITIONS.get(target[len(PREFIX) :])
        if resolved is None:
            return None
        # A property may carry a patch strategy next to its $ref (e.g. Deployment spec.strategy retainKeys).
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return {**resolved, **extra} if extra else resolved
    return schema
