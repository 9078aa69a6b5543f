#!/usr/bin/env bash
# The README's main job, as root on Debian 12: installs what it needs, builds the lab from
# lab/topologies/default.clab.yml (3 nodes, a client, an embedded API server), starts the ironlb controller and a
# speaker per node, applies the tutorial's MetalLB ConfigMap, Deployments and Services, and shows what a user of
# the tutorial sees (the EXTERNAL-IP, and the node answering ARP for it).
# The lab stays up for you to explore; `scripts/demo.sh down` removes every trace of it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

# The lab's state (kubeconfig, logs, pids) lives under IRONLB_LAB_STATE_ROOT, as for `python -m lab`.
state="${IRONLB_LAB_STATE_ROOT:-/run/ironlb-lab}/ironlb"
if [ "${1:-}" = "down" ]; then
    exec python -m lab down
fi

python -m lab up
export KUBECONFIG="$state/kubeconfig"

# The controller runs beside the lab's processes; its command line names the lab's state dir, so
# `python -m lab down` stops it with the rest.
if ! { [ -f "$state/ironlb-controller.pid" ] && kill -0 "$(cat "$state/ironlb-controller.pid")" 2>/dev/null; }; then
    mkdir -p "$state/tmp"
    TMPDIR="$state/tmp" setsid python -m controller --kubeconfig "$KUBECONFIG" --metrics-address 127.0.0.1 --metrics-port 7472 \
        >"$state/ironlb-controller.log" 2>&1 </dev/null &
    echo $! >"$state/ironlb-controller.pid"
fi

# One speaker per node, in the node's namespace (docs/speaker.md): it answers ARP/NDP for the IPs its node wins.
# The membership key (a Secret in a real cluster) is made once; `python -m lab down` stops the speakers with the lab.
key="$state/memberlist-key"
[ -f "$key" ] || { head -c 32 /dev/urandom | base64 >"$key"; chmod 600 "$key"; }
for node in node1 node2 node3; do
    pidfile="$state/ironlb-speaker-$node.pid"
    if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
        TMPDIR="$state/tmp" setsid python -m lab exec "$node" -- python -m speaker --node "$node" \
            --ml-secret-key-path "$key" --exclude-interfaces '^eth0$' >"$state/ironlb-speaker-$node.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
done

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step kubectl apply -f config/namespace.yaml -f config/crd/
step kubectl apply -f examples/tutorial/metallb-config.yaml
step kubectl apply -f examples/tutorial/05-nodeport-service.yaml -f examples/tutorial/nginx-metallb.yaml

echo; echo "waiting for the pods and the EXTERNAL-IP ..."
kubectl wait --for=condition=Available deployment/nginx-app deployment/nginx-metallb --timeout=60s >/dev/null
for _ in $(seq 1 60); do
    ip=$(kubectl get svc nginx-metallb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
    [ -n "$ip" ] && break
    sleep 0.5
done

step kubectl get nodes -o wide
step kubectl get deployments
step kubectl get pods -o wide
step kubectl get endpointslices
step kubectl get svc
step kubectl describe svc nginx-metallb

# Which node answers ARP for the EXTERNAL-IP, as kubectl shows it, and what the client's arping sees.
for _ in $(seq 1 60); do
    kubectl get servicel2status -A 2>/dev/null | grep -q nginx-metallb && break
    sleep 0.5
done
step kubectl get servicel2status -A
step python -m lab exec client -- arping -c 2 -I eth1 "$ip"

pod_ip=$(kubectl get pods -l app=nginx -o jsonpath='{.items[0].status.podIP}')
step python -m lab exec node1 -- curl -s "http://$pod_ip:80/"

cat <<EOT

The lab is up. Try:
  export PATH=$PWD/.venv/bin:\$PATH KUBECONFIG=$KUBECONFIG
  kubectl get svc
  python -m lab exec node2 -- curl -s http://$pod_ip/
  tail $state/ironlb-controller.log $state/ironlb-speaker-node1.log
Remove it with: scripts/demo.sh down
EOT
