"""Unit tests of the server's pure parts: selectors, the store and its history, the journal, protobuf
decoding, the resource registry and the PKI."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lab.apiserver import pki, protobuf, watch
from lab.apiserver.errors import ApiError
from lab.apiserver.persistence import FileJournal
from lab.apiserver.resources import Registry
from lab.apiserver.selectors import (
    FieldRequirement,
    for_kind,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from lab.apiserver.store import Store


def obj(name: str, ns: str = "default", labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, **extra}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
        (
            "app.kubernetes.io/name=web,tier in (front)",
            {"app.kubernetes.io/name": "web", "tier": "front"},
            True,
        ),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), obj("o", labels=labels)) is expected


@pytest.mark.parametrize("bad", ["a b", "a=b,", "=b", "a in (x"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(bad)
    assert err.value.code == 400


def test_field_selectors_on_nested_paths() -> None:
    pod = obj("p", spec={"nodeName": "n1"}, status={"phase": "Running"})

    def pods(text: str) -> list[FieldRequirement]:
        return for_kind(parse_field_selector(text), "", "pods")

    assert all(r.matches(pod) for r in pods("spec.nodeName=n1,status.phase!=Pending"))
    assert not all(r.matches(pod) for r in pods("metadata.namespace=other"))
    assert all(r.matches(pod) for r in pods("spec.hostNetwork=false,spec.host=n1"))


def test_store_versions_history_and_eviction() -> None:
    store = Store(history_size=3)
    key = ("", "configmaps")
    first = store.put(key, obj("a"))
    assert (first.type, first.rv) == ("ADDED", 1)
    assert store.put(key, obj("a")).type == "MODIFIED"
    store.put(key, obj("b"))
    deleted = store.delete(key, "default", "b")
    assert (
        deleted is not None
        and deleted.type == "DELETED"
        and deleted.obj["metadata"]["resourceVersion"] == "4"
    )
    assert store.get(key, "default", "b") is None
    assert store.namespace_object_count("default") == 1
    # Only the last 3 events are kept: from rv 1 on, events 2..4 exist; from rv 0, event 1 is gone.
    since = store.events_since(key, 1)
    assert since is not None and [e.rv for e in since] == [2, 3, 4]
    assert store.events_since(key, 0) is None
    assert store.events_since(("", "secrets"), 0) == []
    assert [o["metadata"]["name"] for o in store.list_objects(key)] == ["a"]


def test_journal_replays_and_drops_a_torn_record(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path)
    store = Store()
    journal.load(store)
    store.journal = journal
    key = ("", "configmaps")
    store.put(key, obj("a"))
    store.put(key, obj("b"))
    store.delete(key, "default", "a")
    journal.close()
    with (tmp_path / "journal.jsonl").open("ab") as f:
        f.write(b'{"rv": 4, "op": "put", "g": "", "r": "configm')  # killed mid-write
    again = Store()
    replayed = FileJournal(tmp_path).load(again)
    assert replayed == 3 and again.rv == 3
    assert [o["metadata"]["name"] for o in again.list_objects(key)] == ["b"]
    history = again.events_since(key, 0)
    assert history is not None and [e.type for e in history] == ["ADDED", "ADDED", "DELETED"]
    assert not (tmp_path / "journal.jsonl").read_bytes().endswith(b"configm")


def test_journal_and_snapshot_are_private(tmp_path: Path) -> None:
    """They hold every object, Secrets included: 0600 files in a 0700 directory, also after a compaction."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    journal = FileJournal(data)
    store = Store()
    journal.load(store)
    store.journal = journal
    store.put(("", "secrets"), obj("s"))
    journal.compact(store)
    store.put(("", "secrets"), obj("t"))
    journal.close()
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("journal.jsonl", "snapshot.json"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | int | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_protobuf_service_decodes_like_its_json() -> None:
    meta = _field(1, "web") + _field(2, "") + _field(11, _field(1, "app") + _field(2, "web")) + _field(8, b"")
    target = _field(1, 0) + _field(2, 8080) + _field(3, "")
    port = _field(1, "http") + _field(2, "TCP") + _field(3, 80) + _field(4, target) + _field(5, 30001)
    spec = _field(1, port) + _field(2, _field(1, "app") + _field(2, "web")) + _field(4, "NodePort")
    spec += _field(7, "") + _field(20, 0)
    raw = _field(1, meta) + _field(2, spec) + _field(3, b"")
    envelope = protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "Service")) + _field(2, raw)
    assert protobuf.decode(envelope) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30001}],
            "selector": {"app": "web"},
            "type": "NodePort",
            "allocateLoadBalancerNodePorts": False,  # a pointer field: an explicit false is kept
        },
    }


def test_protobuf_secret_bytes_and_unknown_kinds() -> None:
    raw = _field(1, _field(1, "s")) + _field(2, _field(1, "k") + _field(2, b"\x00\x01")) + _field(3, "Opaque")
    envelope = protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "Secret")) + _field(2, raw)
    decoded = protobuf.decode(envelope)
    assert decoded["data"] == {"k": base64.b64encode(b"\x00\x01").decode()} and decoded["type"] == "Opaque"
    unknown = protobuf.MAGIC + _field(1, _field(1, "batch/v1") + _field(2, "Job")) + _field(2, b"")
    with pytest.raises(ApiError) as err:
        protobuf.decode(unknown)
    assert err.value.code == 415


def test_registry_registers_and_forgets_crds() -> None:
    registry = Registry()
    crd = {
        "metadata": {"name": "things.ilbt.example.com"},
        "spec": {
            "group": "ilbt.example.com",
            "names": {"plural": "things", "kind": "Thing"},
            "scope": "Cluster",
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}},
                {"name": "v1alpha1", "served": False, "storage": False},
            ],
        },
    }
    generation = registry.generation
    registry.register_crd(crd)
    assert registry.generation > generation
    assert registry.api_group("ilbt.example.com") == {
        "name": "ilbt.example.com",
        "versions": [
            {"groupVersion": "ilbt.example.com/v1", "version": "v1"},
            {"groupVersion": "ilbt.example.com/v1beta1", "version": "v1beta1"},
        ],
        "preferredVersion": {"groupVersion": "ilbt.example.com/v1", "version": "v1"},
    }
    rt = registry.lookup("ilbt.example.com", "v1", "things")
    assert rt is not None and rt.has_status and not rt.namespaced and rt.custom
    assert registry.lookup("ilbt.example.com", "v1alpha1", "things") is None
    registry.unregister_crd("things.ilbt.example.com")
    assert registry.api_group("ilbt.example.com") is None


def test_pki_reuses_the_ca_and_issues_sans(tmp_path: Path) -> None:
    first = pki.load_or_create(tmp_path, ["127.0.0.1", "192.0.2.1", "lab.example"])
    second = pki.load_or_create(tmp_path, ["127.0.0.1"])
    assert first.ca_cert_pem == second.ca_cert_pem and first.client_cert_pem == second.client_cert_pem
    cert = x509.load_pem_x509_certificate(first.server_cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "lab.example" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1",
        "192.0.2.1",
        "10.96.0.1",
    }
    client = x509.load_pem_x509_certificate(first.client_cert_pem)
    assert client.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"


async def test_a_watcher_too_far_behind_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "MAX_BACKLOG", 3)
    hub = watch.WatchHub()
    store = Store()
    store.listeners.append(hub.dispatch)
    slow = hub.add(watch.Watcher(("", "configmaps"), "", [], []))
    picky = hub.add(watch.Watcher(("", "configmaps"), "other", [], []))
    for i in range(6):
        store.put(("", "configmaps"), obj(f"c{i}"))
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert [i[0] for i in items] == ["ADDED", "ADDED", "ADDED", "STOP"] and slow.overflowed
    assert picky.queue.empty() and not picky.overflowed  # other namespace: nothing queued


def test_journal_skips_a_bad_middle_record_and_terminates_the_last(tmp_path: Path) -> None:
    key = ("", "configmaps")
    rec = (
        '{"rv": %d, "op": "put", "g": "", "r": "configmaps", '
        '"obj": {"metadata": {"name": "c%d", "namespace": "default"}}}'
    )
    (tmp_path / "journal.jsonl").write_text(rec % (1, 1) + "\nnot json\n" + rec % (3, 3))  # no final newline
    store = Store()
    journal = FileJournal(tmp_path)
    assert journal.load(store) == 2
    store.journal = journal
    store.put(key, obj("c4"))
    journal.close()
    again = Store()
    assert FileJournal(tmp_path).load(again) == 3
    assert [o["metadata"]["name"] for o in again.list_objects(key)] == ["c1", "c3", "c4"]
