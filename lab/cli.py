"""`python -m lab up|down|status|exec|render-exec`: the netns lab from a containerlab topology file.

  up [--network-only] [--foreground] [--timeout S]
      build the lab, start the API server, controllers and kubelets, wait for Ready Nodes, print the
      kubeconfig path; --foreground holds the lab until SIGINT/SIGTERM, then takes it down
  down                  stop every lab process, delete every netns, link and file of the lab
  status [--json]       what is up (exit 0 up, 1 partial, 3 down)
  exec NODE -- CMD...   run CMD in the node's netns, with KUBECONFIG set for use inside the node
  render-exec           the containerlab `exec:` lines that configure each node like this runner does

Every command takes --topology FILE (default lab/topologies/default.clab.yml) and --state-root DIR
(default /run/ironlb-lab, or $IRONLB_LAB_STATE_ROOT).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lab import network
from lab.logsetup import configure_logging
from lab.network import NetworkError
from lab.runner import DEFAULT_TOPOLOGY, Lab, LabError, LabInterrupted, default_state_root
from lab.supervisor import SupervisorError
from lab.topology import TopologyError, load_topology, render_containerlab_exec

log = logging.getLogger("lab.cli")

EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_DOWN = 3


def build_parser() -> argparse.ArgumentParser:
    def common_options(defaults: bool) -> argparse.ArgumentParser:
        # The options work before and after the subcommand; only the top level sets defaults, so a
        # subcommand's default never overwrites a value given before it.
        def default(value: object) -> object:
            return value if defaults else argparse.SUPPRESS

        common = argparse.ArgumentParser(add_help=False)
        common.add_argument(
            "--topology", type=Path, default=default(DEFAULT_TOPOLOGY), help="containerlab topology file"
        )
        common.add_argument("--state-root", type=Path, default=default(None), help="where lab state lives")
        common.add_argument(
            "-v", "--verbose", action="store_true", default=default(False), help="log every step"
        )
        return common

    common = common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="build and start the lab")
    up.add_argument("--network-only", action="store_true", help="namespaces, links and routes only")
    up.add_argument("--foreground", action="store_true", help="hold the lab until SIGINT/SIGTERM, then down")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Ready Nodes")
    sub.add_parser("down", parents=[common], help="stop and remove everything of the lab")
    status = sub.add_parser("status", parents=[common], help="show what is up")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    exe = sub.add_parser("exec", parents=[common], help="run a command inside a node")
    exe.add_argument("node", help="node name (topology or Kubernetes node name)")
    exe.add_argument("cmd", nargs="*", help="-- CMD ARGS... (everything after --)")
    sub.add_parser("render-exec", parents=[common], help="print each node's containerlab exec lines")
    return parser


def _print_up(lab: Lab, result: str) -> None:
    status = lab.status()
    print(f"lab {lab.plan.name} {'was already up' if result == 'already-up' else 'is up'}")
    if status["kubeconfig"]:
        print(f"kubeconfig: {status['kubeconfig']}")
        print(f"in-node kubeconfig: {status['node_kubeconfig']}")
        print(f"api server: {status['api_url']}")
    for node in status["nodes"]:
        print(f"  {node['name']:<10} {node['role']:<9} netns={node['netns']} {' '.join(node['addresses'])}")


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    result = lab.up(network_only=args.network_only, timeout=args.timeout)
    _print_up(lab, result)
    if not args.foreground:
        return 0

    def stop(signum: int, frame: FrameType | None) -> None:
        raise LabInterrupted(signal.Signals(signum).name)

    try:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Printed only once the handlers are in place: whoever waits for this line may signal right away.
        print("holding the lab; Ctrl-C or SIGTERM takes it down", flush=True)
        while True:
            signal.pause()
    except LabInterrupted:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        lab.down()
        print(f"lab {lab.plan.name} is down", flush=True)
    return 0


def cmd_down(lab: Lab) -> int:
    removed = lab.down()
    print(f"lab {lab.plan.name} is down" + (f" (removed {len(removed)} objects)" if removed else ""))
    return 0


def cmd_status(lab: Lab, as_json: bool) -> int:
    status = lab.status()
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print(f"lab {status['lab']} (prefix {status['prefix']}): {status['status']}")
        for problem in status["problems"]:
            print(f"  problem: {problem}")
        print(f"state dir: {status['state_dir']}")
        if status["kubeconfig"]:
            print(f"kubeconfig: {status['kubeconfig']}  api: {status['api_url']}")
        for node in status["nodes"]:
            print(
                f"  {node['name']:<10} {node['role']:<9} netns={node['netns']:<14} "
                f"mgmt={','.join(node['mgmt'])} addr={','.join(node['addresses']) or '-'} "
                f"pods={','.join(node['pod_cidrs']) or '-'}"
            )
        for name, proc in status["processes"].items():
            print(f"  process {name:<16} pid={proc['pid']:<8} {'running' if proc['running'] else 'DEAD'}")
    return {"up": 0, "partial": EXIT_PARTIAL}.get(status["status"], EXIT_DOWN)


def cmd_exec(lab: Lab, node_name: str, cmd: Sequence[str]) -> int:
    command = list(cmd)
    if not command:
        print("exec: give a command after --", file=sys.stderr)
        return EXIT_USAGE
    try:
        node = lab.plan.node(node_name)
    except KeyError:
        names = ", ".join(n.name for n in lab.plan.nodes)
        print(f"exec: no node {node_name!r} in lab {lab.plan.name} (nodes: {names})", file=sys.stderr)
        return EXIT_USAGE
    if node.netns not in network.list_netns(lab.plan.prefix):
        print(f"exec: lab {lab.plan.name} is not up (no netns {node.netns})", file=sys.stderr)
        return EXIT_DOWN
    env = dict(os.environ)
    # kubectl and python of this venv work inside the node too.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    if lab.paths.node_kubeconfig.exists():
        env["KUBECONFIG"] = str(lab.paths.node_kubeconfig)
    os.execvpe("ip", ["ip", "netns", "exec", node.netns, *command], env)


def cmd_render_exec(lab: Lab) -> int:
    for node in lab.plan.nodes:
        print(f"    {node.name}:\n      exec:")
        for line in render_containerlab_exec(node):
            print(f"        - {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the command for `exec`, never options of ours.
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.cmd = [*getattr(args, "cmd", []), *command]
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        lab = Lab(load_topology(args.topology), state_root=args.state_root or default_state_root())
        if args.command == "up":
            return cmd_up(lab, args)
        if args.command == "down":
            return cmd_down(lab)
        if args.command == "status":
            return cmd_status(lab, args.json)
        if args.command == "exec":
            return cmd_exec(lab, args.node, args.cmd)
        return cmd_render_exec(lab)
    except (TopologyError, LabError, NetworkError, SupervisorError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, LabInterrupted):
        # `up` tears down whatever it built before the interrupt reaches here.
        done = "; the lab was torn down" if args.command == "up" else ""
        print(f"lab: interrupted{done}", file=sys.stderr)
        return 130
