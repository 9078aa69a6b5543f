"""The daemon's pure edges: flags, the mode choice, what the informers cache."""

from pathlib import Path

import pytest

from common.endpoints import EndpointSliceFacts
from dataplane import daemon
from dataplane.daemon import choose_mode, keep_service, keep_slice, parse_args
from dataplane.model import ParsedService
from dataplane.sync import PARSED
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service


def test_flags() -> None:
    args = parse_args(
        ["--node", "n1", "--nodeport-addresses", "192.168.10.0/24, fd00:10::/64", "--ip-families", "4"]
    )
    assert args.nodeport_cidrs == ("192.168.10.0/24", "fd00:10::/64") and args.families == (4,)
    assert parse_args(["--node", "n1"]).nodeport_cidrs is None
    assert parse_args(["--cleanup"]).cleanup  # no node needed to clean up
    for bad in (["--node", "n1", "--nodeport-addresses", "nope"], ["--node", "n1", "--ip-families", "5"], []):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_auto_picks_nftables_then_iptables_and_says_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel checks themselves run in scratch namespaces (tests/dataplane/test_ipvs_unavailable.py).
    caplog.set_level("INFO")
    assert choose_mode("iptables") == "iptables"
    monkeypatch.setattr(daemon, "nftables_unavailable", lambda: None)
    assert choose_mode("auto") == "nftables"
    assert "event=mode_chosen mode=nftables" in caplog.text
    monkeypatch.setattr(daemon, "nftables_unavailable", lambda: "no nf_tables")
    assert choose_mode("auto") == "iptables"
    assert "event=mode_chosen mode=iptables reason='auto: no nftables: no nf_tables'" in caplog.text


def test_ipvs_flags() -> None:
    args = parse_args(["--node", "n1", "--mode", "ipvs", "--ipvs-scheduler", "wlc"])
    assert (args.mode, args.ipvs_scheduler, args.ipvs_graceful_timeout) == ("ipvs", "wlc", 60.0)
    with pytest.raises(SystemExit):
        parse_args(["--node", "n1", "--ipvs-scheduler", "random"])


def test_informers_cache_parsed_objects_only() -> None:
    cached = keep_service(service())
    assert set(cached) == {"metadata", PARSED} and isinstance(cached[PARSED], ParsedService)
    cached = keep_slice(endpoint_slice(endpoints=[endpoint("10.244.1.5")]))
    assert isinstance(cached[PARSED], EndpointSliceFacts) and cached["metadata"]["name"] == "web-abcde"


def test_the_mode_a_node_runs_is_logged_at_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level("INFO")
    missing = f"{tmp_path}/no-kubeconfig"
    assert daemon.main(["--node", "n1", "--mode", "iptables", "--kubeconfig", missing]) == 2
    assert "event=starting node=n1 mode=iptables" in caplog.text
