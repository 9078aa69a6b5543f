"""The daemon's pure edges: flags, the mode choice, what the informers cache."""

import pytest

from common.endpoints import EndpointSliceFacts
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


def test_modes_not_built_yet_fail_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    assert choose_mode("iptables") == "iptables"
    assert choose_mode("auto") == "iptables"
    assert choose_mode("ipvs") is None
    assert "event=mode_unavailable mode=ipvs" in caplog.text


def test_informers_cache_parsed_objects_only() -> None:
    cached = keep_service(service())
    assert set(cached) == {"metadata", PARSED} and isinstance(cached[PARSED], ParsedService)
    cached = keep_slice(endpoint_slice(endpoints=[endpoint("10.244.1.5")]))
    assert isinstance(cached[PARSED], EndpointSliceFacts) and cached["metadata"]["name"] == "web-abcde"
