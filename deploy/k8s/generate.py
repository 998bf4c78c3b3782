"""Writes deploy/k8s/base/: the kustomize base for every service in shared.launcher.SERVICES.

    python deploy/k8s/generate.py        # or: make k8s

The manifests are generated so that a new service (SERVICES is the one list) gets its
Deployment, Service, HPA, PDB and NetworkPolicy in the same shape as the others; the
output is committed and a test fails when it is stale. Edit the tables here, not the
YAML.

Design, in short:
- access runs as a sidecar of the nats-server pod (shareProcessNamespace): it rewrites
  nats-server's users file and reloads it with SIGHUP, as `pid: service:nats` does in
  compose. So NATS is one pod (a StatefulSet of 1, JetStream on a volume); a NATS
  cluster would need auth callout instead of a users file (see README).
- Every secret is a file: each service mounts only its own Secret `tenantry-svc-<name>`
  (made by the overlay's secretGenerator from `python -m shared.provision`).
- Probes are HTTP (shared.health): /livez (liveness, startup), /readyz (readiness).
- audit runs one replica, replaced with the Recreate strategy, and no HPA: it is the
  single ClickHouse writer, and a standby copy waits for the writer lease before it
  starts, so it would never report ready and a rolling update would wait on it forever.
  The lease still guards against two writers if two pods ever overlap.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.launcher import SERVICES  # noqa: E402
from shared.provision import CANARY_READERS, CLICKHOUSE_READERS, SERVICE_UID  # noqa: E402

BASE = Path(__file__).resolve().parent / "base"
IMAGE = "tenantry"
AUDIT_IMAGE = "tenantry-audit"
NATS_IMAGE = "nats:2.15.1-alpine"
QDRANT_IMAGE = "qdrant/qdrant:v1.20.0"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
HTTP_PORT = 8080
PART_OF = {"app.kubernetes.io/part-of": "tenantry"}


@dataclass(frozen=True)
class Shape:
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str
    min_replicas: int = 2
    max_replicas: int = 6
    autoscale: bool = True
    egress_https: bool = False  # calls an outside API (Anthropic, a fine-tuning API)
    public_port: int | None = None  # serves clients over HTTP on this port (not only NATS)
    recreate: bool = False  # stop the old pod before starting the new one


SHAPES: dict[str, Shape] = {
    "gateway": Shape("200m", "256Mi", "1", "512Mi", 2, 10),
    "promptconfig": Shape("100m", "192Mi", "500m", "384Mi", 2, 4),
    "metering": Shape("100m", "192Mi", "500m", "384Mi", 2, 6),
    "retrieval": Shape("250m", "384Mi", "1", "1Gi", 2, 8),
    "leakage": Shape("250m", "384Mi", "1", "1Gi", 2, 8),
    "llm": Shape("100m", "256Mi", "500m", "512Mi", 2, 10, egress_https=True),
    "finetune": Shape("500m", "512Mi", "2", "2Gi", 1, 4, egress_https=True),
    # The HTTP door (services/api), once it is in SERVICES: clients reach it on 8000; its
    # health/metrics port stays 8080 (TENANTRY_API_PORT would default to 8080 too).
    "api": Shape("200m", "256Mi", "1", "512Mi", 2, 10, public_port=8000),
    # The single writer (see the module docstring for why not a warm standby).
    "audit": Shape("250m", "512Mi", "1", "1Gi", 1, 1, autoscale=False, recreate=True),
    # A sidecar of nats-server: one per NATS pod.
    "access": Shape("50m", "128Mi", "250m", "256Mi", 1, 1, autoscale=False),
}
# A service added to SERVICES without a shape gets this one until someone sizes it.
DEFAULT_SHAPE = Shape("100m", "256Mi", "500m", "512Mi", 1, 4)


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, **PART_OF}


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component}


def service_env(name: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "TENANTRY_NATS_USER", "value": f"svc-{name}"},
        {"name": "TENANTRY_NATS_PASSWORD_FILE", "value": "/run/secrets/tenantry/nats-password"},
    ]
    if name in CANARY_READERS:
        env.append(
            {"name": "TENANTRY_CANARY_SECRET_FILE", "value": "/run/secrets/tenantry/canary-secret"}
        )
    if name in CLICKHOUSE_READERS:
        env += [
            {
                "name": "TENANTRY_CLICKHOUSE_DSN",
                "value": "http://tenantry@clickhouse:8123/tenantry",
            },
            {
                "name": "TENANTRY_CLICKHOUSE_PASSWORD_FILE",
                "value": "/run/secrets/tenantry/clickhouse-password",
            },
            {"name": "TENANTRY_SCHEMA_DIR", "value": "/app/deploy/clickhouse"},
        ]
    if name == "retrieval":
        env.append({"name": "TENANTRY_QDRANT_URL", "value": "http://qdrant:6333"})
    if name == "llm":
        env.append(
            {
                "name": "ANTHROPIC_API_KEY",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": "tenantry-anthropic",
                        "key": "api-key",
                        "optional": True,
                    }
                },
            }
        )
    if name == "access":
        env.append({"name": "TENANTRY_NATS_AUTH_DIR", "value": "/data/auth"})
    public = SHAPES.get(name, DEFAULT_SHAPE).public_port
    if public is not None:
        env += [
            {"name": "TENANTRY_API_HOST", "value": "0.0.0.0"},  # noqa: S104 (a pod's own address)
            {"name": "TENANTRY_API_PORT", "value": str(public)},
        ]
    return env


def probes() -> dict[str, Any]:
    def http(path: str, **more: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 3, **more}

    return {
        # A slow start (KV replay, fingerprints, schema) is given up to 5 minutes.
        "startupProbe": http("/livez", periodSeconds=5, failureThreshold=60),
        "livenessProbe": http("/livez", periodSeconds=10, failureThreshold=3),
        "readinessProbe": http("/readyz", periodSeconds=5, failureThreshold=2),
    }


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": SERVICE_UID,
        "runAsGroup": SERVICE_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def service_container(name: str, shape: Shape) -> dict[str, Any]:
    image = AUDIT_IMAGE if name == "audit" else IMAGE
    return {
        "name": name,
        "image": f"{image}:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", f"services.{name}"],
        "envFrom": [{"configMapRef": {"name": "tenantry-config"}}],
        "env": service_env(name),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT},
            *(
                [{"name": "public", "containerPort": shape.public_port}]
                if shape.public_port
                else []
            ),
        ],
        **probes(),
        "resources": {
            "requests": {"cpu": shape.cpu, "memory": shape.memory},
            "limits": {"cpu": shape.cpu_limit, "memory": shape.memory_limit},
        },
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "secrets", "mountPath": "/run/secrets/tenantry", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        ],
    }


def secret_volume(name: str) -> dict[str, Any]:
    # Group-readable: the kubelet gives the files the pod's fsGroup (the service's uid).
    return {
        "name": "secrets",
        "secret": {"secretName": f"tenantry-svc-{name}", "defaultMode": 0o440},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "fsGroup": SERVICE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(name: str, shape: Shape) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "replicas": shape.min_replicas,
            "selector": {"matchLabels": selector(name)},
            "strategy": (
                {"type": "Recreate"}
                if shape.recreate
                else {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
            ),
            "template": {
                "metadata": {
                    "labels": {**labels(name), "tenantry/nats-client": "true"},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security(),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(name)},
                        }
                    ],
                    "containers": [service_container(name, shape)],
                    "volumes": [
                        secret_volume(name),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def service_of(name: str) -> dict[str, Any]:
    ports = [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}]
    public = SHAPES.get(name, DEFAULT_SHAPE).public_port
    if public is not None:
        ports.append({"name": "public", "port": public, "targetPort": "public"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {"selector": selector(name), "ports": ports},
    }


def hpa(name: str, shape: Shape) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": shape.min_replicas,
            "maxReplicas": shape.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            # Scale down slowly: a request in flight holds a reservation for minutes.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def pdb(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels(name)},
        # maxUnavailable, not minAvailable: a one-replica service must not block node drains.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)}},
    }


def port(number: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": number}


DNS_EGRESS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
NATS_EGRESS = {"to": [{"podSelector": {"matchLabels": selector("nats")}}], "ports": [port(4222)]}
PROMETHEUS_INGRESS = {
    # Prometheus runs in the namespace labelled below (kube-prometheus: `monitoring`).
    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    "ports": [port(HTTP_PORT)],
}


def network_policy(name: str, shape: Shape) -> dict[str, Any]:
    egress: list[dict[str, Any]] = [DNS_EGRESS, NATS_EGRESS]
    if name == "retrieval":
        egress.append(
            {"to": [{"podSelector": {"matchLabels": selector("qdrant")}}], "ports": [port(6333)]}
        )
    if name == "audit":
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": selector("clickhouse")}}],
                "ports": [port(8123)],
            }
        )
    if shape.egress_https:
        egress.append(
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                        }
                    }
                ],
                "ports": [port(443)],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            # Nothing calls a service directly (all traffic is NATS); only metrics scrapes,
            # and clients on a public HTTP port.
            "ingress": [
                PROMETHEUS_INGRESS,
                *([{"ports": [port(shape.public_port)]}] if shape.public_port else []),
            ],
            "egress": egress,
        },
    }


def service_manifests(name: str) -> list[dict[str, Any]]:
    shape = SHAPES.get(name, DEFAULT_SHAPE)
    docs = [deployment(name, shape), service_of(name), pdb(name), network_policy(name, shape)]
    if shape.autoscale:
        docs.insert(2, hpa(name, shape))
    return docs


def nats_manifests() -> list[dict[str, Any]]:
    access = service_container("access", SHAPES["access"])
    access["volumeMounts"].append({"name": "data", "mountPath": "/data"})
    # Through the pod's own loopback: the `nats` Service only routes to ready pods, and
    # this pod is ready only once access is, so going through the Service would deadlock.
    access["env"].insert(0, {"name": "TENANTRY_NATS_URL", "value": "nats://127.0.0.1:4222"})
    seed = (
        # The users file is the access service's to rewrite: seed it once; the static
        # users (and nats.conf) follow the Secret on every start.
        "mkdir -p /data/auth && cp /seed/nats.conf /seed/static-users.json /data/auth/ && "
        "{ [ -f /data/auth/auth.conf ] || cp /seed/auth.conf /data/auth/auth.conf; }"
    )
    nats = {
        "name": "nats",
        "image": NATS_IMAGE,
        "args": [
            "-js",
            "-sd",
            "/data/jetstream",
            "-m",
            "8222",
            "-c",
            "/data/auth/nats.conf",
            "-P",
            "/data/auth/nats-server.pid",
        ],
        "ports": [
            {"name": "client", "containerPort": 4222},
            {"name": "monitor", "containerPort": 8222},
        ],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "monitor"},
            "periodSeconds": 2,
            "failureThreshold": 90,
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "monitor"}, "periodSeconds": 10},
        "readinessProbe": {
            "httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"},
            "periodSeconds": 5,
        },
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "nats", "labels": labels("nats")},
        "spec": {
            "serviceName": "nats-headless",
            # One server: the users file is per server (a cluster needs auth callout).
            "replicas": 1,
            "selector": {"matchLabels": selector("nats")},
            "template": {
                "metadata": {
                    "labels": labels("nats"),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    # access (same uid) reloads nats-server with SIGHUP.
                    "shareProcessNamespace": True,
                    "securityContext": pod_security(),
                    "initContainers": [
                        {
                            "name": "seed-auth",
                            "image": NATS_IMAGE,
                            "command": ["sh", "-c", seed],
                            "securityContext": container_security(),
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/data"},
                                {"name": "seed", "mountPath": "/seed", "readOnly": True},
                            ],
                        }
                    ],
                    "containers": [nats, access],
                    "volumes": [
                        {"name": "seed", "secret": {"secretName": "tenantry-nats-auth"}},
                        secret_volume("access"),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Gi"}},
                    },
                }
            ],
        },
    }
    client_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nats", "labels": labels("nats")},
        "spec": {
            "selector": selector("nats"),
            "ports": [{"name": "client", "port": 4222, "targetPort": "client"}],
        },
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nats-headless", "labels": labels("nats")},
        "spec": {
            "clusterIP": "None",
            "selector": selector("nats"),
            "ports": [{"name": "client", "port": 4222, "targetPort": "client"}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "nats", "labels": labels("nats")},
        "spec": {
            "podSelector": {"matchLabels": selector("nats")},
            "policyTypes": ["Ingress"],
            # Tenants' backends connect from anywhere (each with its own NATS user and
            # permissions); the monitoring port only from Prometheus.
            "ingress": [
                {"ports": [port(4222)]},
                {**PROMETHEUS_INGRESS, "ports": [port(8222), port(HTTP_PORT)]},
            ],
        },
    }
    return [statefulset, client_service, headless, pdb("nats"), policy]


def store_statefulset(
    name: str,
    image: str,
    container_port: int,
    mount: str,
    probe: dict[str, Any],
    env: list[dict[str, Any]] | None = None,
    extra_volumes: list[dict[str, Any]] | None = None,
    extra_mounts: list[dict[str, Any]] | None = None,
    storage: str = "20Gi",
) -> list[dict[str, Any]]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": container_port}],
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
        "volumeMounts": [{"name": "data", "mountPath": mount}, *(extra_mounts or [])],
    }
    if env:
        container["env"] = env
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {
                "serviceName": name,
                "replicas": 1,
                "selector": {"matchLabels": selector(name)},
                "template": {
                    "metadata": {"labels": labels(name)},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [container],
                        **({"volumes": extra_volumes} if extra_volumes else {}),
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": storage}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {
                "selector": selector(name),
                "ports": [{"name": "http", "port": container_port, "targetPort": "http"}],
            },
        },
    ]


def qdrant_manifests() -> list[dict[str, Any]]:
    docs = store_statefulset(
        "qdrant",
        QDRANT_IMAGE,
        6333,
        "/qdrant/storage",
        {"httpGet": {"path": "/readyz", "port": "http"}},
    )
    docs.append(store_policy("qdrant", 6333, ["retrieval"]))
    return docs


def clickhouse_manifests() -> list[dict[str, Any]]:
    docs = store_statefulset(
        "clickhouse",
        CLICKHOUSE_IMAGE,
        8123,
        "/var/lib/clickhouse",
        {"httpGet": {"path": "/ping", "port": "http"}},
        env=[
            {"name": "CLICKHOUSE_DB", "value": "tenantry"},
            {"name": "CLICKHOUSE_USER", "value": "tenantry"},
            {"name": "CLICKHOUSE_PASSWORD_FILE", "value": "/run/secrets/clickhouse/password"},
            {"name": "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "value": "0"},
        ],
        extra_volumes=[
            {"name": "secrets", "secret": {"secretName": "tenantry-clickhouse"}},
        ],
        extra_mounts=[
            {"name": "secrets", "mountPath": "/run/secrets/clickhouse", "readOnly": True}
        ],
        storage="50Gi",
    )
    # Grafana (wherever it runs) reads ClickHouse too: give its pods this label.
    docs.append(store_policy("clickhouse", 8123, ["audit"], grafana=True))
    return docs


def store_policy(
    name: str, number: int, clients: list[str], grafana: bool = False
) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": selector(client)}} for client in clients
    ]
    if grafana:
        sources.append(
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tenantry/grafana": "true"}}}
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [port(number)]}],
        },
    }


def default_deny() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "labels": PART_OF},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def store_egress() -> dict[str, Any]:
    """nats, qdrant and clickhouse answer; they start no connections except DNS."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "stores-egress", "labels": PART_OF},
        "spec": {
            "podSelector": {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/name",
                        "operator": "In",
                        "values": ["nats", "qdrant", "clickhouse"],
                    }
                ]
            },
            "policyTypes": ["Egress"],
            "egress": [DNS_EGRESS],
        },
    }


def config_map() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "tenantry-config", "labels": PART_OF},
        "data": {
            "TENANTRY_ENVIRONMENT": "production",
            "TENANTRY_NATS_URL": "nats://nats:4222",
            "TENANTRY_LOG_FORMAT": "json",
            "TENANTRY_HTTP_PORT": str(HTTP_PORT),
            "TENANTRY_DATA_DIR": "/tmp/tenantry",  # noqa: S108 (the pod's own emptyDir)
        },
    }


def dump(docs: list[dict[str, Any]]) -> str:
    header = "# Generated by deploy/k8s/generate.py from shared.launcher.SERVICES: edit that.\n"
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)
    return header + body


def render() -> dict[str, str]:
    """File name (relative to base/) -> content."""
    files: dict[str, str] = {
        "config.yaml": dump([config_map()]),
        "network.yaml": dump([default_deny(), store_egress()]),
        "nats.yaml": dump(nats_manifests()),
        "qdrant.yaml": dump(qdrant_manifests()),
        "clickhouse.yaml": dump(clickhouse_manifests()),
    }
    for name in SERVICES:
        if name == "access":
            continue  # inside the nats pod (nats.yaml)
        files[f"services/{name}.yaml"] = dump(service_manifests(name))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": PART_OF, "includeSelectors": False}],
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = (
        "# Generated by deploy/k8s/generate.py: edit that.\n"
        + yaml.safe_dump(kustomization, sort_keys=False)
    )
    return files


def secret_generator() -> list[dict[str, Any]]:
    """Secrets from the files `python -m shared.provision state` writes (make k8s-secrets)."""
    nats = ["nats.conf", "auth.conf", "static-users.json"]
    secrets: list[dict[str, Any]] = [
        {"name": "tenantry-nats-auth", "files": [f"state/nats/{f}" for f in nats]},
        {"name": "tenantry-clickhouse", "files": ["password=state/secrets/clickhouse/password"]},
    ]
    for name in SERVICES:
        folder = f"state/secrets/services/{name}"
        files = [f"nats-password={folder}/nats-password"]
        if name in CANARY_READERS:
            files.append(f"canary-secret={folder}/canary-secret")
        if name in CLICKHOUSE_READERS:
            files.append(f"clickhouse-password={folder}/clickhouse-password")
        secrets.append({"name": f"tenantry-svc-{name}", "files": files})
    return secrets


def overlay(env: str) -> dict[str, str]:
    namespace: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": f"tenantry-{env}" if env != "production" else "tenantry",
            "labels": {
                **PART_OF,
                # The Tenantry pods meet "restricted" (non-root, no capabilities, seccomp);
                # the ClickHouse and Qdrant images start as root, so enforce "baseline".
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace["metadata"]["name"],
        "resources": ["../../base", "namespace.yaml"],
        "images": [
            {"name": IMAGE, "newName": f"registry.example.com/{IMAGE}", "newTag": "0.1.0"},
            {
                "name": AUDIT_IMAGE,
                "newName": f"registry.example.com/{AUDIT_IMAGE}",
                "newTag": "0.1.0",
            },
        ],
        "secretGenerator": secret_generator(),
    }
    if env == "production":
        # Tenants' backends connect from outside the cluster (each with its own NATS user).
        kustomization["patches"] = [
            {
                "target": {"kind": "Service", "name": "nats"},
                "patch": yaml.safe_dump(
                    [{"op": "add", "path": "/spec/type", "value": "LoadBalancer"}]
                ),
            }
        ]
    if env == "dev":
        # One copy of everything, smaller volumes: a laptop cluster (kind, k3d, minikube).
        kustomization["images"] = [
            {"name": IMAGE, "newTag": "0.1.0"},
            {"name": AUDIT_IMAGE, "newTag": "0.1.0"},
        ]
        kustomization["patches"] = [
            {
                "target": {"kind": "HorizontalPodAutoscaler"},
                "patch": yaml.safe_dump(
                    [{"op": "replace", "path": "/spec/minReplicas", "value": 1}]
                ),
            },
            {
                "target": {"kind": "Deployment"},
                "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/replicas", "value": 1}]),
            },
        ]
    header = (
        "# Generated by deploy/k8s/generate.py: edit that.\n"
        f"# Secrets first: make k8s-secrets OVERLAY={env}   then: kubectl apply -k .\n"
    )
    return {
        "kustomization.yaml": header + yaml.safe_dump(kustomization, sort_keys=False, width=100),
        "namespace.yaml": dump([namespace]),
    }


OVERLAYS = ("dev", "production")
GRAFANA = ROOT / "deploy" / "grafana"


def monitoring() -> dict[str, str]:
    """deploy/k8s/monitoring: Tenantry's Grafana dashboards and datasources for a Grafana
    already in the cluster (kube-prometheus-stack style: its sidecars load ConfigMaps
    labelled grafana_dashboard / grafana_datasource), in the `monitoring` namespace."""
    dashboards = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "tenantry-grafana-dashboards",
            "labels": {**PART_OF, "grafana_dashboard": "1"},
            "annotations": {"grafana_folder": "Tenantry"},
        },
        "data": {p.name: p.read_text() for p in sorted((GRAFANA / "dashboards").glob("*.json"))},
    }
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "tenantry.yaml").read_text()
    )
    for source in sources["datasources"]:
        if source["uid"] == "tenantry-clickhouse":
            source["jsonData"]["host"] = "clickhouse.tenantry.svc"
        if source["uid"] == "tenantry-prometheus":
            # kube-prometheus-stack's default; change it to your Prometheus.
            source["url"] = "http://prometheus-operated.monitoring.svc:9090"
            source["isDefault"] = False
    datasources = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "tenantry-grafana-datasources",
            "labels": {**PART_OF, "grafana_datasource": "1"},
        },
        "data": {"tenantry.yaml": yaml.safe_dump(sources, sort_keys=False)},
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "monitoring",
        "resources": ["grafana.yaml"],
        # Mount it in Grafana at /run/secrets/grafana (e.g. the chart's extraSecretMounts),
        # and label the Grafana pods tenantry/grafana=true: ClickHouse admits only those.
        "secretGenerator": [
            {
                "name": "tenantry-grafana",
                "files": ["clickhouse-password=state/clickhouse-password"],
            }
        ],
    }
    header = (
        "# Generated by deploy/k8s/generate.py from deploy/grafana: edit those.\n"
        "# make k8s-secrets OVERLAY=production   then: kubectl apply -k deploy/k8s/monitoring\n"
    )
    return {
        "grafana.yaml": dump([dashboards, datasources]),
        "kustomization.yaml": header + yaml.safe_dump(kustomization, sort_keys=False),
    }


def write(root: Path = BASE.parent) -> list[Path]:
    written = []
    outputs = {f"base/{k}": v for k, v in render().items()}
    for env in OVERLAYS:
        outputs.update({f"overlays/{env}/{k}": v for k, v in overlay(env).items()})
    outputs.update({f"monitoring/{k}": v for k, v in monitoring().items()})
    for relative, text in outputs.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"{path.relative_to(ROOT)}\n")
