"""Durability: an append-only journal of JSON records (one line per committed change, written before the
client hears back, so it survives SIGKILL) and a periodic snapshot that lets the journal restart empty.

Layout in the data dir: `snapshot.json` ({"rv": N, "objects": [[group, plural, obj], ...]}) and
`journal.jsonl` (records {"rv", "op": "put"|"delete", "g", "r", "obj"} with rv above the snapshot's).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from lab.apiserver.store import Key, Obj, Store

log = logging.getLogger("ironlb.apiserver.persistence")


class FileJournal:
    def __init__(self, data_dir: Path, fsync: bool = False, compact_every: int = 50000) -> None:
        self.dir = data_dir
        self.snapshot_path = data_dir / "snapshot.json"
        self.journal_path = data_dir / "journal.jsonl"
        self.fsync = fsync
        self.compact_every = compact_every
        self._records = 0
        self._file: Any = None
        self._store: Store | None = None

    def load(self, store: Store) -> int:
        """Fill `store` from the snapshot and the journal; returns the number of journal records replayed."""
        # Every object, Secrets included, is in these files: only the server's user may read them.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        for path in (self.snapshot_path, self.journal_path):
            if path.exists():
                path.chmod(0o600)
        if self.snapshot_path.exists():
            snap = json.loads(self.snapshot_path.read_text())
            for group, plural, obj in snap["objects"]:
                store.restore_object((group, plural), obj)
            store.set_base_rv(int(snap["rv"]))
        replayed = 0
        if self.journal_path.exists():
            with self.journal_path.open("rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            kept = bytearray()
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    # A torn final record (killed mid-write) was never acknowledged: drop it. A bad record
                    # in the middle (a failed write the server survived) is skipped, not the rest with it.
                    if i < len(lines) - 1:
                        log.warning("event=journal_corrupt line=%d action=skipped", i + 1)
                    continue
                if int(rec["rv"]) > store.rv:
                    store.replay(int(rec["rv"]), rec["op"], (rec["g"], rec["r"]), rec["obj"])
                    replayed += 1
                kept += line + b"\n"
            if bytes(kept) != data:
                # Rewrite it clean (whole records, newline-terminated) before appending to it again.
                tmp = self.journal_path.with_suffix(".jsonl.tmp")
                with _private(tmp, "wb") as f:
                    f.write(bytes(kept))
                tmp.replace(self.journal_path)
        self._records = replayed
        self._store = store
        self._file = _private(self.journal_path, "ab")
        return replayed

    def record(self, rv: int, op: str, key: Key, obj: Obj) -> None:
        line = json.dumps({"rv": rv, "op": op, "g": key[0], "r": key[1], "obj": obj}, separators=(",", ":"))
        self._file.write(line.encode() + b"\n")
        if self.fsync:
            os.fsync(self._file.fileno())
        self._records += 1

    def maybe_compact(self) -> None:
        """Called after a write has been applied to the store (never inside record())."""
        if self._records >= self.compact_every and self._store is not None:
            self.compact(self._store)

    def compact(self, store: Store) -> None:
        objects = [[k[0], k[1], obj] for k, obj in store.all_objects()]
        snap = {"rv": store.rv, "objects": objects}
        tmp = self.snapshot_path.with_suffix(".json.tmp")
        with _private(tmp, "w") as f:
            json.dump(snap, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.snapshot_path)
        self._file.close()
        self._file = _private(self.journal_path, "wb")
        self._records = 0
        log.info("event=compacted rv=%d objects=%d", store.rv, len(objects))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _private(path: Path, mode: str) -> Any:
    """`open(path, mode)` creating the file 0600 (unbuffered for binary modes, as the journal needs)."""
    if "w" in mode:
        path.unlink(missing_ok=True)  # a leftover file would keep its old mode
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, mode, buffering=0 if "b" in mode else -1)
