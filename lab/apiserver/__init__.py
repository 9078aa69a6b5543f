"""An embedded Kubernetes API server that kubectl, the kubernetes Python client and kopf accept."""
