#!/usr/bin/env bash
# The README's main job, as root on Debian 12: installs what it needs, builds the lab from
# lab/topologies/default.clab.yml (3 nodes, a client, an embedded API server), installs ironlb from its manifests
# (`kubectl apply -k lab/manifests`: config/ plus the dataplane component) so the lab's kubelets run the controller
# Deployment and the speaker and dataplane DaemonSets, applies the tutorial's objects, and then, from the
# client's namespace: the EXTERNAL-IP answering, the NodePort on every node, ClientIP session affinity, a
# speaker killed under traffic (the gap measured), and the dataplane switching mode under a live connection.
#
#   scripts/demo.sh                     # dataplane starts in iptables mode, switches to nftables
#   scripts/demo.sh --mode nftables     # starts in nftables mode, switches to iptables
#   scripts/demo.sh --mode ipvs         # the IPVS variant (the kernel needs the user-mode-linux runner)
#   scripts/demo.sh down                # removes every trace of the lab
# The lab stays up for you to explore. IRONLB_LAB_TOPOLOGY (default lab/topologies/default.clab.yml) and
# IRONLB_LAB_STATE_ROOT choose another lab, as for `python -m lab` (tests run a copy with its own prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=iptables
case "${1:-}" in
    down) action=down ;;
    --mode) action=up; mode="${2:?--mode needs iptables, nftables or ipvs}" ;;
    "") action=up ;;
    *) echo "usage: scripts/demo.sh [--mode iptables|nftables|ipvs] | down" >&2; exit 2 ;;
esac
case "$mode" in
    iptables) other=nftables ;;
    nftables) other=iptables ;;
    ipvs)
        # IPVS needs a kernel this machine's lacks: that variant runs inside user-mode-linux (issue 14).
        if [ -x scripts/demo-ipvs.sh ]; then exec scripts/demo-ipvs.sh "$@"; fi
        echo "scripts/demo.sh --mode ipvs: not available yet (scripts/demo-ipvs.sh, issue 14)" >&2
        exit 2 ;;
    *) echo "scripts/demo.sh: unknown mode $mode (iptables, nftables or ipvs)" >&2; exit 2 ;;
esac

scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
topology="${IRONLB_LAB_TOPOLOGY:-lab/topologies/default.clab.yml}"
lab() { python -m lab "$1" --topology "$topology" "${@:2}"; }
# The lab's state (kubeconfig, logs, pids) lives under IRONLB_LAB_STATE_ROOT, as for `python -m lab`.
name=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$topology")
state="${IRONLB_LAB_STATE_ROOT:-/run/ironlb-lab}/$name"
if [ "$action" = down ]; then
    lab down
    exit
fi

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
step() {
    local shown="$*"
    printf '\033[1m$ %s\033[0m\n' "${shown/#in_client /python -m lab exec client -- }"
    "$@"
}
in_client() { lab exec client -- "$@"; }
lb_ip=192.168.10.90
traffic="$PWD/scripts/demo_traffic.py"
trap 'echo; echo "demo failed (line $LINENO). The lab is still up: kubectl get pods -A; scripts/demo.sh down" >&2' ERR

bold "== 1/7 the lab: 3 nodes and a client in network namespaces, an embedded API server (RBAC on)"
lab up
export KUBECONFIG="$state/kubeconfig"

bold "== 2/7 ironlb from its manifests: the controller Deployment, the speaker and dataplane DaemonSets"
step kubectl apply -k lab/manifests
# The speakers' memberlist Secret, once per cluster (config/speaker.yaml).
kubectl -n ironlb-speaker get secret memberlist >/dev/null 2>&1 \
    || step kubectl create secret generic -n ironlb-speaker memberlist --from-literal=secretkey="$(head -c 48 /dev/urandom | base64 -w0)"
current=$(kubectl -n kube-system get configmap ironlb-dataplane -o jsonpath='{.data.mode}')
if [ "$current" != "$mode" ]; then
    step kubectl -n kube-system patch configmap ironlb-dataplane --type merge -p "{\"data\":{\"mode\":\"$mode\"}}"
    step kubectl -n kube-system rollout restart daemonset ironlb-dataplane
fi
step kubectl -n metallb-system rollout status deployment ironlb-controller --timeout 120s
step kubectl -n ironlb-speaker rollout status daemonset ironlb-speaker --timeout 120s
step kubectl -n kube-system rollout status daemonset ironlb-dataplane --timeout 120s
step kubectl get pods -A -o wide

bold "== 3/7 the tutorial: MetalLB's ConfigMap, a NodePort Service and a LoadBalancer Service"
step kubectl apply -f examples/tutorial/metallb-config.yaml -f examples/tutorial/05-nodeport-service.yaml \
    -f examples/tutorial/nginx-metallb.yaml
kubectl wait --for=condition=Available deployment/nginx-app deployment/nginx-metallb --timeout=120s >/dev/null
for _ in $(seq 1 120); do
    [ "$(kubectl get svc nginx-metallb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" = "$lb_ip" ] && break
    sleep 0.5
done
step kubectl get svc
for _ in $(seq 1 60); do
    [ -n "$(kubectl get servicel2status -A -o jsonpath='{.items[0].status.node}' 2>/dev/null)" ] && break
    sleep 0.5
done
step kubectl get servicel2status -A

bold "== 4/7 from the client: curl the EXTERNAL-IP (each line: the pod that answered, and the client it saw)"
# The IP was assigned a moment ago: wait until a speaker announces it and the dataplanes forward it.
for _ in $(seq 1 60); do
    in_client curl -s -m 2 -o /dev/null "http://$lb_ip:8090/" && break
    sleep 0.5
done
lb_answers=0
for _ in 1 2 3 4 5; do
    if step in_client curl -s -m 3 "http://$lb_ip:8090/"; then lb_answers=$((lb_answers + 1)); fi
done
echo "answered $lb_answers of 5"

bold "== 5/7 the NodePort 30001 on each node, and a ClusterIP with sessionAffinity ClientIP (from the nodes)"
nodeport_ok=0
for ip in 192.168.10.11 192.168.10.12 192.168.10.13; do
    if step in_client curl -s -m 3 "http://$ip:30001/"; then nodeport_ok=$((nodeport_ok + 1)); fi
done
kubectl get svc nginx-sticky >/dev/null 2>&1 \
    || step kubectl expose deployment nginx-app --name nginx-sticky --port 80 --target-port 80 --session-affinity ClientIP
sticky_ip=$(kubectl get svc nginx-sticky -o jsonpath='{.spec.clusterIP}')
step kubectl get svc nginx-sticky -o wide
# The Service was created a moment ago: wait for the dataplanes to program it (a sync, usually well under 1 s).
for _ in $(seq 1 60); do
    lab exec node1 -- curl -s -m 2 -o /dev/null "http://$sticky_ip/" && lab exec node2 -- curl -s -m 2 -o /dev/null "http://$sticky_ip/" && break
    sleep 0.5
done
sticky=""
for node in node1 node2; do
    echo "from $node, 6 requests to $sticky_ip:80:"
    pods=$(for _ in 1 2 3 4 5 6; do
        { lab exec "$node" -- curl -s -m 3 "http://$sticky_ip/" || echo "no-answer"; } | cut -d' ' -f1
    done)
    echo "$pods" | sort | uniq -c | sed 's/^ */  /'
    # The pod most requests went to, and how many: 6/6 when the affinity holds.
    top=$(echo "$pods" | sort | uniq -c | sort -rn | head -1)
    sticky="$sticky${sticky:+,} $node: $(awk '{print $1 "/6 to " $2}' <<<"$top")"
done

bold "== 6/7 kill the announcing speaker's pod while the client sends a request every 20 ms"
announcer=$(kubectl get servicel2status -A -o jsonpath='{.items[0].status.node}')
speaker_pod=$(kubectl -n ironlb-speaker get pods --field-selector "spec.nodeName=$announcer" -o jsonpath='{.items[0].metadata.name}')
echo "$lb_ip is announced by $announcer (speaker pod $speaker_pod)"
stop=$(mktemp -u "$state/tmp/demo-stop.XXXXXX")
in_client python "$traffic" requests "$lb_ip:8090" --stop-file "$stop" >"$state/demo-failover.out" &
traffic_pid=$!
sleep 1
step kubectl -n ironlb-speaker delete pod "$speaker_pod"
sleep 3
touch "$stop"
wait "$traffic_pid"
failover=$(cat "$state/demo-failover.out")
echo "$failover"
gap=$(sed -n 's/.*longest_gap_ms=\([0-9]*\).*/\1/p' <<<"$failover")
echo "failover gap: ${gap} ms (longest time the client went without an answer; requests every 20 ms)"
step kubectl -n ironlb-speaker rollout status daemonset ironlb-speaker --timeout 120s
step kubectl get servicel2status -A

bold "== 7/7 switch the dataplane $mode -> $other while one connection stays open"
rules=$(lab exec node1 -- sh -c \
    'echo "iptables KUBE-* rules: $(iptables-save 2>/dev/null | grep -c "^-A KUBE")," \
          "nftables table ip ironlb: $(nft list table ip ironlb >/dev/null 2>&1 && echo present || echo absent)"')
echo "node1 before the switch: $rules"
rm -f "$stop"
in_client python "$traffic" hold "$lb_ip:8090" --stop-file "$stop" >"$state/demo-hold.out" &
hold_pid=$!
sleep 1
step kubectl -n kube-system patch configmap ironlb-dataplane --type merge -p "{\"data\":{\"mode\":\"$other\"}}"
step kubectl -n kube-system rollout restart daemonset ironlb-dataplane
step kubectl -n kube-system rollout status daemonset ironlb-dataplane --timeout 180s
sleep 1
touch "$stop"
wait "$hold_pid"
hold=$(cat "$state/demo-hold.out")
echo "$hold"
# What node1's kernel holds now: kube-proxy's iptables chains (iptables mode) or the `ironlb` table (nftables).
rules=$(lab exec node1 -- sh -c \
    'echo "iptables KUBE-* rules: $(iptables-save 2>/dev/null | grep -c "^-A KUBE")," \
          "nftables table ip ironlb: $(nft list table ip ironlb >/dev/null 2>&1 && echo present || echo absent)"')
echo "node1 after the switch: $rules"
printf '\033[1m$ %s\033[0m\n' "python -m lab exec client -- curl -s http://$lb_ip:8090/"
final=$(in_client curl -s -m 3 "http://$lb_ip:8090/")
echo "$final"

bold "== summary"
cat <<EOT
ironlb installed from its manifests: $(kubectl get pods -A --no-headers | grep -c '^\(metallb-system\|ironlb-speaker\|kube-system\) .*Running') pods running
EXTERNAL-IP $lb_ip:8090 answered $lb_answers of 5 from the client (by ${final%% *})
NodePort 30001 answered on $nodeport_ok of 3 nodes
ClientIP affinity (nginx-sticky, $sticky_ip):$sticky
speaker failover ($announcer's pod killed): gap ${gap} ms, $(grep -o 'failed=[0-9]*' <<<"$failover") requests failed
dataplane $mode -> $other: $(cut -d' ' -f1,4,5 <<<"$hold")

The lab is up. Try:
  export PATH=$PWD/.venv/bin:\$PATH KUBECONFIG=$KUBECONFIG
  kubectl get pods -A; kubectl -n ironlb-speaker logs ds/ironlb-speaker
  python -m lab exec client -- curl -s http://$lb_ip:8090/
Remove it with: scripts/demo.sh down
EOT
if [ "$topology" != lab/topologies/default.clab.yml ]; then
    echo "(this lab's topology is $topology: give python -m lab --topology $topology, and IRONLB_LAB_TOPOLOGY to demo.sh)"
fi
