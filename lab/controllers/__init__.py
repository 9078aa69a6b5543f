"""The lab's controller-manager: a minimal Deployment controller and an EndpointSlice (+ Endpoints) one.

Run with `python -m lab.controllers --kubeconfig K`. Pure cores: naming.py, scheduling.py, deployment_plan.py,
slices.py, nodelifecycle.py, expectations.py; thin shells over the API: deployments.py, endpointslices.py,
nodes.py, binder.py (binds pods created without a node).
"""
