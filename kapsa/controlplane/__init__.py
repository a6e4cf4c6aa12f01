"""A real Kubernetes on this machine: kube-apiserver, etcd, kube-controller-manager on loopback,
and a real node (containerd, runc, kubelet, kube-proxy, kube-scheduler) in a network namespace.

Used by the test suite and by `kapsa sandbox` (docs/test-ground.md). Binaries come from
`KUBEBUILDER_ASSETS`, else the cache, else a build from Debian's `kubernetes` source package
(see `assets.py`).
"""

from kapsa.controlplane.assets import Assets, find_or_build_assets
from kapsa.controlplane.cluster import ControlPlane

__all__ = ["Assets", "ControlPlane", "find_or_build_assets"]
