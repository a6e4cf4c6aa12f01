"""A real Kubernetes control plane on loopback: kube-apiserver, etcd, kube-controller-manager.

Used by the test suite and by `kapsa sandbox`. Binaries come from `KUBEBUILDER_ASSETS`, else the
cache, else a build from Debian's `kubernetes` source package (see `build.py`).
"""

from kapsa.controlplane.assets import Assets, find_or_build_assets
from kapsa.controlplane.cluster import ControlPlane

__all__ = ["Assets", "ControlPlane", "find_or_build_assets"]
