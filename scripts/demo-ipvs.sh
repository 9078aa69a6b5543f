#!/usr/bin/env bash
# `scripts/demo.sh --mode ipvs` (scripts/demo.sh calls this): the README's main job with the dataplane in IPVS mode,
# on a kernel without IPVS. The lab's nodes, pods and client run in a user-mode-linux guest (lab.uml_lab, see
# docs/dataplane.md#ipvs-mode); it shows the virtual servers, kube-ipvs0 on every node, the strictARP sysctls the
# dataplane set, and the one node answering ARP for the LoadBalancer IP, then removes the lab (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    --mode) shift 2 ;;
esac
scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m lab.uml_demo "$@"
