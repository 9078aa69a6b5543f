"""The tutorial's manifests (examples/tutorial/), read by every test that applies them."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUTORIAL_DIR = REPO / "examples" / "tutorial"


def manifest(*names: str) -> str:
    """The named files of examples/tutorial/, joined into one multi-document YAML stream."""
    return "\n---\n".join((TUTORIAL_DIR / name).read_text() for name in names)


NGINX_SVC = manifest("02-nginx-clusterip.yaml")  # Deployment nginx-server1 (2 replicas) + ClusterIP nginx-svc
HEADLESS = manifest("04-headless-service.yaml")
NGINX_APP = manifest("05-nodeport-service.yaml")  # Deployment nginx-app + NodePort 8060:30001
NGINX_METALLB = manifest("nginx-metallb.yaml")  # Deployment nginx-metallb + LoadBalancer port 8090
EXTERNAL_NAME = manifest("externalname.yaml")
NS1 = manifest("ns1-nginx.yaml")
METALLB_CONFIG = manifest("metallb-config.yaml")  # metallb-system/config: 192.168.10.90-192.168.10.100
METALLB_NAMESPACE = (REPO / "config" / "namespace.yaml").read_text()
