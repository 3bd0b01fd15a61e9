"""The local Kubernetes control plane for the tests (stdlib only): python -m deploy.k8s.localk8s."""
