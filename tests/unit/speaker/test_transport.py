"""The membership over real UDP on loopback: speakers with the key find each other, one without it cannot join
(its datagrams are refused and counted), and a goodbye is heard at once."""

from __future__ import annotations

import socket

from speaker.transport import MembershipLoop
from tests.controller.helpers import wait_for


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_speakers_with_the_key_see_each_other_and_an_impostor_cannot_join() -> None:
    port = free_udp_port()
    universe = {"a": "127.0.0.1", "b": "127.0.0.2", "c": "127.0.0.3"}
    loops = {
        "a": MembershipLoop("a", [b"the-key"], bind="127.0.0.1", port=port),
        "b": MembershipLoop("b", [b"the-key", b"next-key"], bind="127.0.0.2", port=port),  # mid-rotation
        "c": MembershipLoop("c", [b"wrong-key"], bind="127.0.0.3", port=port),
    }
    try:
        for loop in loops.values():
            loop.set_universe(universe)
            loop.start()
        both = {"a", "b"}
        wait_for("a and b alive for each other", lambda: loops["a"].alive() == both == loops["b"].alive())
        wait_for("c's datagrams refused", lambda: loops["a"].bad_datagrams + loops["b"].bad_datagrams > 0)
        assert loops["c"].alive() == {"c"}
        # c keeps trying (more of its datagrams refused after those already counted) and never joins.
        refused = loops["a"].bad_datagrams + loops["b"].bad_datagrams
        wait_for("c refused again", lambda: loops["a"].bad_datagrams + loops["b"].bad_datagrams > refused)
        assert loops["a"].alive() == {"a", "b"}, "an impostor never joins"
        _, isolated, reachable, joined = loops["a"].status()
        assert joined and reachable and not isolated
        loops["b"].leave()
        # Without a witness a never declares b dead, so only the goodbye can make b leave a's view.
        wait_for("b's goodbye heard", lambda: loops["a"].alive() == {"a"})
    finally:
        for name, loop in loops.items():
            if name != "b":
                loop.stop()
