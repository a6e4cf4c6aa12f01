# Shared setup for scripts/test and scripts/sandbox; sourced, not run.
# On a fresh Debian 12 machine it installs what Kapsa's tests and sandbox need; on a warm one it
# only checks, so it costs a second or two.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

kapsa_debian_packages=(
    git etcd-server golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev
    docker-registry apache2-utils postgresql openssl python3-venv graphviz
    containerd runc containernetworking-plugins iptables conntrack iproute2 procps busybox-static
    buildah openssh-client
    gcc libc6-dev
)

kapsa_install_debian_packages() {
    local missing=() pkg sudo=()
    for pkg in "${kapsa_debian_packages[@]}"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    echo "==> installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

kapsa_venv() {
    local stamp=.venv/.kapsa-pyproject.sha256 want
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        echo "==> installing Kapsa and its dev tools into .venv"
        .venv/bin/pip install -q -e '.[dev]'
        echo "$want" >"$stamp"
    fi
}

kapsa_install_debian_packages
kapsa_venv
# The control plane's binaries: cached after the first build (about 8 minutes), seconds after.
.venv/bin/python -m kapsa.controlplane >/dev/null
