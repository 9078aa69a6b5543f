"""Which speakers are alive: a membership protocol as a pure state machine (docs/speaker.md, "Liveness").

Inputs are the time, the messages received and the list of nodes (the universe); outputs are the messages to
send and the members that came up or went down. The transport (speaker/transport.py) only moves bytes.

- **Watching.** Members sit on a ring ordered by a hash of their name. Every member sends a heartbeat to its
  ``watchers`` (K) nearest live successors every ``heartbeat_interval``; each member so watches its K nearest
  live predecessors. Load per member is K messages per interval whatever the size of the cluster.
- **Suspicion needs a witness.** A predecessor unheard for ``suspect_after`` is pinged directly, and the other
  members that watch it (plus a few random ones) are asked whether they hear it. It is declared dead only when
  no one answers for it and at least one of them confirms the silence: a member cut off from everyone never
  gets a confirmation, so it never declares the others dead (it knows it is isolated instead).
- **Dissemination.** A death, a leave or a (re)join is a fact ``(name, incarnation, status)``. A member that
  learns a fact pushes it at once to ``fanout`` random members (an epidemic: log(N) network hops, not
  rounds), repeats it a few times, and piggybacks it on its heartbeats, so a member the epidemic missed gets
  it from a predecessor within one heartbeat interval.
- **Refutation.** A higher incarnation wins; at equal incarnation dead or left beats alive. A live member told
  it is dead bumps its incarnation and says so: false suspicions heal, and a restarted speaker supersedes its
  old self.
- **Anti-entropy.** Heartbeats carry a digest of the member table. A receiver whose digest differs from its
  predecessor's for ``sync_after`` exchanges whole tables with it (push-pull), as memberlist does.
- **Reachability.** Every member pings one random live member every ``sample_interval``. When half of the
  recent ones go unanswered it pings a burst of random members; if fewer than half of those answer, it is on
  the small side of a partition (``reachable()`` is False) until two bursts in a row succeed. A minority whose
  members cannot confirm each other's suspicions keeps the majority alive in its table, so its table alone
  would never tell it.
- **Leaving.** ``leave()`` sends the member's own ``left`` fact to its neighbours and random members at once:
  a speaker stopped with SIGTERM hands its IPs over without waiting for a timeout.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ALIVE, DEAD, LEFT = 0, 1, 2
STATUS_NAMES = {ALIVE: "alive", DEAD: "dead", LEFT: "left"}

Address = tuple[str, int]
# Bytes a fact may take in one datagram, and its encoding overhead beyond the name (see membership_codec).
FACT_BUDGET = 1000
FACT_OVERHEAD = 30


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    incarnation: int
    status: int  # ALIVE, DEAD or LEFT

    def supersedes(self, other: Fact | None) -> bool:
        return other is None or (self.incarnation, self.status) > (other.incarnation, other.status)


# --- messages (each carries its sender's name, incarnation and a per-sender sequence number) ----------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sender: str
    incarnation: int
    seq: int
    digest: int
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True, slots=True)
class Ping:
    sender: str
    incarnation: int
    seq: int
    nonce: int
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    sender: str
    incarnation: int
    seq: int
    nonce: int
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """Do you hear ``subject``?"""

    sender: str
    incarnation: int
    seq: int
    nonce: int
    subject: str


@dataclass(frozen=True, slots=True)
class Answer:
    sender: str
    incarnation: int
    seq: int
    nonce: int
    subject: str
    alive: bool


@dataclass(frozen=True, slots=True)
class Gossip:
    sender: str
    incarnation: int
    seq: int
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True, slots=True)
class Sync:
    """Part of a member table; a request asks the receiver for its own table back."""

    sender: str
    incarnation: int
    seq: int
    nonce: int
    reply: bool
    facts: tuple[Fact, ...] = ()


Message = Heartbeat | Ping | Ack | Query | Answer | Gossip | Sync


@dataclass(frozen=True, slots=True)
class Send:
    to: Address
    message: Message


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    alive: bool
    fact: Fact


@dataclass(frozen=True)
class Settings:
    heartbeat_interval: float = 0.1
    suspect_after: float = 0.5
    confirm_timeout: float = 0.2  # how long a suspicion waits for the witnesses
    probe_timeout: float = 0.1  # how long a witness waits for the suspect's ack
    watchers: int = 3
    fanout: int = 3
    gossip_interval: float = 0.02
    retransmit_mult: int = 3
    piggyback: int = 8  # facts per heartbeat
    piggyback_for: float = 1.0  # how long a new fact rides on every heartbeat and ack
    gossip_facts: int = 24  # facts per gossip message
    sync_after: float = 2.0
    sync_facts: int = 24  # facts per sync message
    reconnect_interval: float = 1.0
    join_timeout: float = 1.0
    notice_interval: float = 0.5  # at most one "you are dead" notice per member per interval
    sample_interval: float = (
        0.25  # one ping of a random live member per interval: can this member reach most?
    )
    sample_window: int = 8
    sample_failures: int = 3  # this many unanswered in the window: check with a burst
    burst: int = 8  # pings at once to random live members
    burst_needed: int = 4  # answers a burst needs, else this member is in a minority
    resume_bursts: int = 2  # consecutive good bursts before a member in a minority counts as reachable again
    sample_timeout: float = 0.2


@functools.lru_cache(maxsize=65536)
def ring_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


@functools.lru_cache(maxsize=262144)
def fact_hash(fact: Fact) -> int:
    text = f"{fact.name}|{fact.incarnation}|{fact.status}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class View:
    """A converged member table to start from (simulations start thousands of members from one shared view
    instead of making each join). ``digest`` covers ``facts`` whose names are in ``universe``."""

    universe: Mapping[str, Address]
    facts: Mapping[str, Fact]
    digest: int

    @staticmethod
    def of(universe: Mapping[str, Address], facts: Mapping[str, Fact]) -> View:
        digest = 0
        for name, fact in facts.items():
            if name in universe:
                digest ^= fact_hash(fact)
        return View(universe, facts, digest)


@dataclass(slots=True)
class _Suspicion:
    nonce: int
    started: float
    deadline: float
    witnesses: int
    silent: int = 0  # witnesses that confirmed the silence


@dataclass(slots=True)
class _Probe:
    """A witness' own ping of a suspect, on behalf of a requester."""

    requester: Address
    nonce: int  # the requester's
    subject: str
    deadline: float


@dataclass(slots=True)
class _Sample:
    deadline: float
    burst: bool


@dataclass(slots=True)
class _Queued:
    fact: Fact
    transmissions: int = 0


@dataclass(slots=True)
class _ReplayWindow:
    incarnation: int
    last: int
    seen: int = 1  # bit i: last - i was seen


@dataclass
class Stats:
    sent: int = 0
    received: int = 0
    dropped_replays: int = 0


class Membership:
    def __init__(
        self,
        name: str,
        incarnation: int,
        now: float,
        settings: Settings | None = None,
        rng: random.Random | None = None,
        universe: Mapping[str, Address] | None = None,
        view: View | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or Settings()
        self.rng = rng or random.Random()
        self.incarnation = incarnation
        self.stats = Stats()
        self._seq = 0
        self._left = False
        self._base: Mapping[str, Fact] = view.facts if view is not None else {}
        self._own: dict[str, Fact] = {}
        self._own[name] = Fact(name, incarnation, ALIVE)
        self._universe: Mapping[str, Address] = {}
        self._names_by_key: dict[int, str] = {}
        self._ring: list[int] = []  # ring keys of live members, sorted (always including this one)
        self._digest = 0
        self._heard: dict[str, float] = {}
        self._last_heard_any = now
        self._watched: tuple[str, ...] = ()
        self._watch_since: dict[str, float] = {}
        self._suspicions: dict[str, _Suspicion] = {}
        self._probes: dict[int, _Probe] = {}
        self._queue: dict[str, _Queued] = {}
        self._recent: dict[str, Fact] = {}  # insertion order = age
        self._recent_until: dict[str, float] = {}
        self._clock = now
        self._stale: frozenset[str] = frozenset()
        self._samples: dict[int, _Sample] = {}
        self._outcomes: list[bool] = []  # the last sample_window samples, oldest first
        self._burst_deadline = math.inf
        self._burst_answers = 0
        self._good_bursts = 0
        self._next_sample = now + self.settings.sample_interval
        self._minority = False
        self._windows: dict[str, _ReplayWindow] = {}
        self._mismatch_since: dict[str, float] = {}
        self._last_sync = -math.inf
        self._answered_syncs: dict[tuple[str, int], float] = {}
        self._notices: dict[str, float] = {}
        self._changes: list[Change] = []
        self._next_heartbeat = now
        self._next_gossip = now
        self._next_reconnect = now + self.settings.reconnect_interval
        self._joined = view is not None
        self._join_deadline = now if view is None else math.inf
        self._join_attempts = 0
        self.set_universe(now, universe if universe is not None else {}, view)
        self._enqueue(self._own[name])

    # --- reading the state -------------------------------------------------------------------------------

    def fact(self, name: str) -> Fact | None:
        own = self._own.get(name)
        return own if own is not None else self._base.get(name)

    def alive(self) -> frozenset[str]:
        """Members of the universe alive in this member's view, this one included (unless it left)."""
        return frozenset(self._names_by_key[key] for key in self._ring)

    def is_alive(self, name: str) -> bool:
        return ring_key(name) in self._names_by_key and self._in_ring(ring_key(name))

    def isolated(self, now: float) -> bool:
        """Others are alive in this member's table, yet none has been heard for ``suspect_after``: this member
        is probably the one cut off."""
        return len(self._ring) > 1 and now - self._last_heard_any > self.settings.suspect_after

    @property
    def joined(self) -> bool:
        """It has merged another member's table, or found it is alone (``join_timeout``)."""
        return self._joined

    def reachable(self) -> bool:
        """False while this member's samples say it reaches fewer than half of the members it holds alive."""
        return not self._minority

    @property
    def digest(self) -> int:
        return self._digest

    @property
    def left(self) -> bool:
        return self._left

    def watched(self) -> tuple[str, ...]:
        return self._watched

    def set_stale(self, names: Iterable[str]) -> None:
        """Members whose speaker Lease the API shows unrenewed (read while this member's own renewals
        succeed): the witness of last resort when no member answers for a suspect."""
        self._stale = frozenset(names)

    def drain_changes(self) -> list[Change]:
        changes, self._changes = self._changes, []
        return changes

    def next_deadline(self) -> float:
        """The earliest time ``tick`` has something to do."""
        earliest = min(self._next_heartbeat, self._next_reconnect, self._next_sample, self._burst_deadline)
        if not self._joined:
            earliest = min(earliest, self._join_deadline)
        if self._queue:
            earliest = min(earliest, self._next_gossip)
        suspect_after = self.settings.suspect_after
        heard, since, suspicions = self._heard, self._watch_since, self._suspicions
        for name in self._watched:
            if name not in suspicions:
                start = max(heard.get(name, -math.inf), since.get(name, -math.inf))
                earliest = min(earliest, start + suspect_after)
        for pending in (suspicions, self._probes, self._samples):
            for entry in pending.values():
                earliest = min(earliest, entry.deadline)
        return earliest

    # --- the universe ------------------------------------------------------------------------------------

    def set_universe(self, now: float, members: Mapping[str, Address], view: View | None = None) -> None:
        """The members that may exist (name -> address), from the Node list. This member is always in it."""
        self._universe = members
        self._names_by_key = {ring_key(name): name for name in members}
        self._names_by_key[ring_key(self.name)] = self.name
        ring = []
        for name in members:
            fact = self.fact(name)
            if fact is not None and fact.status == ALIVE and name != self.name:
                ring.append(ring_key(name))
        if not self._left:
            ring.append(ring_key(self.name))
        ring.sort()
        self._ring = ring
        if view is not None and view.universe is members:
            self._digest = view.digest
            own = self._own[self.name]
            base = view.facts.get(self.name)
            if self.name in members and base is not None:
                self._digest ^= fact_hash(base) ^ fact_hash(own)
        else:
            digest = 0
            for name in members:
                fact = self.fact(name)
                if fact is not None:
                    digest ^= fact_hash(fact)
            self._digest = digest
        self._rewatch(now)

    # --- driving the machine -----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Send]:
        self._clock = now
        sends: list[Send] = []
        if self._left:
            return sends
        s = self.settings
        if not self._joined and now >= self._join_deadline:
            sends += self._join(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = max(self._next_heartbeat + s.heartbeat_interval, now)
            for successor in self._neighbours(after=True):
                facts = self._piggyback(now)
                sends.append(
                    self._send(
                        successor,
                        Heartbeat(self.name, self.incarnation, self._next_seq(), self._digest, facts),
                    )
                )
        sends += self._check_watched(now)
        sends += self._check_suspicions(now)
        sends += self._check_probes(now)
        sends += self._check_samples(now)
        if self._queue and now >= self._next_gossip:
            sends += self._gossip(now)
        if now >= self._next_reconnect:
            self._next_reconnect = now + s.reconnect_interval
            sends += self._reconnect(now)
        self.stats.sent += len(sends)
        return sends

    def receive(self, now: float, source: Address, message: Message) -> list[Send]:
        if self._left or message.sender == self.name:
            return []
        self._clock = now
        if not self._fresh(message):
            self.stats.dropped_replays += 1
            return []
        self.stats.received += 1
        sends: list[Send] = []
        learned = False
        trusted, learned = self._heard_from(now, message.sender, message.incarnation, source, sends)
        if isinstance(message, Heartbeat | Ping | Ack | Gossip | Sync):
            for fact in message.facts:
                learned |= self._apply(now, fact)
        if isinstance(message, Heartbeat):
            self._compare_digest(now, message, source, sends)
        elif isinstance(message, Ping):
            sends.append(
                Send(
                    source,
                    Ack(
                        self.name,
                        self.incarnation,
                        self._next_seq(),
                        message.nonce,
                        self._piggyback(now),
                    ),
                )
            )
        elif isinstance(message, Ack):
            self._on_ack(now, message, trusted, sends)
        elif isinstance(message, Query):
            self._on_query(now, message, source, sends)
        elif isinstance(message, Answer):
            self._on_answer(now, message)
        elif isinstance(message, Sync):
            self._on_sync(now, message, source, sends)
        if learned:
            self._next_gossip = now
            sends += self._gossip(now)
        self.stats.sent += len(sends)
        return sends

    def leave(self, now: float) -> list[Send]:
        """Say goodbye: this member's ``left`` fact to its neighbours and random members. Call it again to
        repeat the goodbye (UDP loses packets); afterwards the machine ignores everything."""
        self._clock = now
        if not self._left:
            self._left = True
            fact = Fact(self.name, self.incarnation, LEFT)
            self._set(now, fact)
            self._enqueue(fact)
        fact = self._own[self.name]
        targets = set(self._neighbours(after=True)) | set(self._neighbours(after=False))
        targets |= set(self._random_alive(self.settings.fanout * 2, exclude=targets))
        sends = [
            self._send(t, Gossip(self.name, self.incarnation, self._next_seq(), (fact,)))
            for t in sorted(targets)
        ]
        self.stats.sent += len(sends)
        return sends

    # --- receiving ---------------------------------------------------------------------------------------

    def _fresh(self, message: Message) -> bool:
        """Drop replays: a sliding window of the last 64 sequence numbers per sender incarnation."""
        window = self._windows.get(message.sender)
        inc, seq = message.incarnation, message.seq
        if window is None or inc > window.incarnation:
            self._windows[message.sender] = _ReplayWindow(inc, seq)
            return True
        if inc < window.incarnation:
            return False
        if seq > window.last:
            shift = seq - window.last
            window.seen = ((window.seen << shift) | 1) & ((1 << 64) - 1) if shift < 64 else 1
            window.last = seq
            return True
        offset = window.last - seq
        if offset >= 64 or window.seen & (1 << offset):
            return False
        window.seen |= 1 << offset
        return True

    def _heard_from(
        self, now: float, sender: str, incarnation: int, source: Address, sends: list[Send]
    ) -> tuple[bool, bool]:
        """Account for a message from ``sender``: (alive in this member's table now, that was news)."""
        known = self.fact(sender)
        learned = False
        if known is None or incarnation > known.incarnation:
            learned = self._apply(now, Fact(sender, incarnation, ALIVE))
            known = self.fact(sender)
        assert known is not None
        if known.status != ALIVE:
            # It talks, but this member holds it dead or gone at its incarnation: tell it, so it refutes.
            if now - self._notices.get(sender, -math.inf) >= self.settings.notice_interval:
                self._notices[sender] = now
                sends.append(Send(source, Gossip(self.name, self.incarnation, self._next_seq(), (known,))))
            return False, learned
        self._heard[sender] = now
        self._last_heard_any = now
        return True, learned

    def _compare_digest(self, now: float, message: Heartbeat, source: Address, sends: list[Send]) -> None:
        if message.digest == self._digest:
            self._mismatch_since.pop(message.sender, None)
            return
        since = self._mismatch_since.setdefault(message.sender, now)
        s = self.settings
        if now - since >= s.sync_after and now - self._last_sync >= s.sync_after:
            self._last_sync = now
            self._mismatch_since.pop(message.sender, None)
            sends += self._sync_messages(source, nonce=self.rng.getrandbits(32), reply=False)

    def _on_ack(self, now: float, message: Ack, trusted: bool, sends: list[Send]) -> None:
        sample = self._samples.pop(message.nonce, None)
        if sample is not None:
            if sample.burst:
                self._burst_answers += 1
            else:
                self._record_sample(now, True)
            return
        suspicion = self._suspicions.get(message.sender)
        if suspicion is not None and suspicion.nonce == message.nonce and trusted:
            del self._suspicions[message.sender]
        probe = self._probes.pop(message.nonce, None)
        if probe is not None and probe.subject == message.sender:
            sends.append(
                Send(
                    probe.requester,
                    Answer(
                        self.name, self.incarnation, self._next_seq(), probe.nonce, probe.subject, trusted
                    ),
                )
            )

    def _on_query(self, now: float, message: Query, source: Address, sends: list[Send]) -> None:
        subject = message.subject
        heard = self._heard.get(subject, -math.inf)
        # Only fresh first-hand news counts: heard within two heartbeats (a watcher of a live subject always
        # has that); else ask the subject itself.
        if subject == self.name or now - heard < 2 * self.settings.heartbeat_interval:
            sends.append(self._answer(source, message, True))
            return
        address = self._universe.get(subject)
        if address is None or not self.is_alive(subject):
            sends.append(self._answer(source, message, False))
            return
        nonce = self.rng.getrandbits(32)
        self._probes[nonce] = _Probe(source, message.nonce, subject, now + self.settings.probe_timeout)
        sends.append(Send(address, Ping(self.name, self.incarnation, self._next_seq(), nonce)))

    def _answer(self, to: Address, query: Query, alive: bool) -> Send:
        return Send(
            to, Answer(self.name, self.incarnation, self._next_seq(), query.nonce, query.subject, alive)
        )

    def _on_answer(self, now: float, message: Answer) -> None:
        suspicion = self._suspicions.get(message.subject)
        if suspicion is None or suspicion.nonce != message.nonce:
            return
        if message.alive:
            # A witness hears it: this member's own link to it is what fails. Watch afresh (hearsay is not
            # hearing: it never feeds another member's answer).
            del self._suspicions[message.subject]
            self._watch_since[message.subject] = now
        else:
            suspicion.silent += 1

    def _on_sync(self, now: float, message: Sync, source: Address, sends: list[Send]) -> None:
        if message.reply:
            self._joined = True
            return
        key = (message.sender, message.nonce)
        if key in self._answered_syncs:
            return
        if len(self._answered_syncs) > 256:
            self._answered_syncs = {k: t for k, t in self._answered_syncs.items() if now - t < 10}
        self._answered_syncs[key] = now
        sends += self._sync_messages(source, message.nonce, reply=True)

    # --- the member table --------------------------------------------------------------------------------

    def _apply(self, now: float, fact: Fact) -> bool:
        """Merge one fact; True if it was news (then it is passed on)."""
        if fact.name == self.name:
            self._refute(now, fact)
            return False
        current = self.fact(fact.name)
        if not fact.supersedes(current):
            return False
        self._set(now, fact)
        self._enqueue(fact)
        return True

    def _refute(self, now: float, fact: Fact) -> None:
        if self._left:
            return
        if (
            fact.status != ALIVE and fact.incarnation >= self.incarnation
        ) or fact.incarnation > self.incarnation:
            self.incarnation = fact.incarnation + 1
            mine = Fact(self.name, self.incarnation, ALIVE)
            self._set(now, mine)
            self._enqueue(mine)
            self._next_gossip = now

    def _set(self, now: float, fact: Fact) -> None:
        current = self.fact(fact.name)
        self._own[fact.name] = fact
        in_universe = fact.name in self._universe
        if in_universe:
            if current is not None:
                self._digest ^= fact_hash(current)
            self._digest ^= fact_hash(fact)
        was_alive = current is not None and current.status == ALIVE
        is_alive = fact.status == ALIVE
        if was_alive == is_alive or (fact.name == self.name and not self._left):
            return
        self._changes.append(Change(fact.name, is_alive, fact))
        if in_universe or fact.name == self.name:
            key = ring_key(fact.name)
            if is_alive:
                bisect.insort(self._ring, key)
            else:
                index = bisect.bisect_left(self._ring, key)
                if index < len(self._ring) and self._ring[index] == key:
                    del self._ring[index]
            self._rewatch(now)

    def _in_ring(self, key: int) -> bool:
        index = bisect.bisect_left(self._ring, key)
        return index < len(self._ring) and self._ring[index] == key

    def _table(self) -> Iterable[Fact]:
        for name in self._universe:
            fact = self.fact(name)
            if fact is not None:
                yield fact
        if self.name not in self._universe:
            yield self._own[self.name]

    # --- watching ----------------------------------------------------------------------------------------

    def _neighbours(self, after: bool) -> list[str]:
        """The K nearest live members after (successors) or before (predecessors) this one on the ring."""
        ring = self._ring
        count = min(self.settings.watchers, len(ring) - 1)
        if count <= 0:
            return []
        me = bisect.bisect_left(ring, ring_key(self.name))
        step = 1 if after else -1
        return [self._names_by_key[ring[(me + step * i) % len(ring)]] for i in range(1, count + 1)]

    def _watchers_of(self, name: str) -> list[str]:
        """Who watches ``name`` in this member's view: its K successors."""
        ring = self._ring
        key = ring_key(name)
        count = min(self.settings.watchers, len(ring) - 1)
        index = bisect.bisect_left(ring, key)
        return [self._names_by_key[ring[(index + i) % len(ring)]] for i in range(1, count + 1)]

    def _rewatch(self, now: float) -> None:
        watched = tuple(self._neighbours(after=False))
        if watched == self._watched:
            return
        for name in watched:
            if name not in self._watched:
                self._watch_since[name] = now
        for name in self._watched:
            if name not in watched:
                self._watch_since.pop(name, None)
                self._suspicions.pop(name, None)
        self._watched = watched

    def _watch_start(self, name: str) -> float:
        return max(self._heard.get(name, -math.inf), self._watch_since.get(name, -math.inf))

    def _check_watched(self, now: float) -> list[Send]:
        sends: list[Send] = []
        s = self.settings
        for name in self._watched:
            if name in self._suspicions or now - self._watch_start(name) < s.suspect_after:
                continue
            nonce = self.rng.getrandbits(32)
            witnesses = [w for w in self._watchers_of(name) if w != self.name]
            witnesses += self._random_alive(2, exclude={name, self.name, *witnesses})
            self._suspicions[name] = _Suspicion(nonce, now, now + s.confirm_timeout, len(witnesses))
            sends.append(self._send(name, Ping(self.name, self.incarnation, self._next_seq(), nonce)))
            for witness in witnesses:
                sends.append(
                    self._send(witness, Query(self.name, self.incarnation, self._next_seq(), nonce, name))
                )
        return sends

    def _check_suspicions(self, now: float) -> list[Send]:
        sends: list[Send] = []
        for name, suspicion in list(self._suspicions.items()):
            if self._heard.get(name, -math.inf) > suspicion.started:
                del self._suspicions[name]
                continue
            if now < suspicion.deadline:
                continue
            del self._suspicions[name]
            if suspicion.silent == 0 and suspicion.witnesses > 0 and name not in self._stale:
                # Nobody answered at all: this member is the likely problem. Watch afresh; declare nothing.
                # (Unless the API shows the suspect's Lease unrenewed: then its witnesses are gone too.)
                self._watch_since[name] = now
                continue
            known = self.fact(name)
            if known is None or known.status != ALIVE:
                continue
            dead = Fact(name, known.incarnation, DEAD)
            self._apply(now, dead)
            address = self._universe.get(name)
            if address is not None:  # if it is alive after all, it refutes at once
                sends.append(Send(address, Gossip(self.name, self.incarnation, self._next_seq(), (dead,))))
            self._next_gossip = now
            sends += self._gossip(now)
        return sends

    def _check_probes(self, now: float) -> list[Send]:
        sends: list[Send] = []
        for nonce, probe in list(self._probes.items()):
            if now >= probe.deadline:
                del self._probes[nonce]
                sends.append(
                    Send(
                        probe.requester,
                        Answer(
                            self.name, self.incarnation, self._next_seq(), probe.nonce, probe.subject, False
                        ),
                    )
                )
        return sends

    # --- reachability -------------------------------------------------------------------------------------

    def _check_samples(self, now: float) -> list[Send]:
        sends: list[Send] = []
        s = self.settings
        for nonce, sample in list(self._samples.items()):
            if now >= sample.deadline:
                del self._samples[nonce]
                if not sample.burst:
                    self._record_sample(now, False)
        if now >= self._burst_deadline:
            self._burst_deadline = math.inf
            if self._burst_answers < s.burst_needed:
                self._minority, self._good_bursts = True, 0
            else:
                # Standing down is quick, coming back is not: a member reaching few others passes one burst
                # by luck now and then, and bursts repeat while it is in a minority.
                self._good_bursts += 1
                if self._good_bursts >= s.resume_bursts or not self._minority:
                    self._minority = False
            self._outcomes = []
            if self._minority:
                self._next_sample = now  # keep checking with bursts until this member is back
        if now >= self._next_sample:
            self._next_sample = now + s.sample_interval
            if (self._minority or self._doubtful()) and self._burst_deadline == math.inf:
                sends += self._start_burst(now)
            else:
                for name in self._random_alive(1, exclude={self.name}):
                    sends.append(self._sample(name, now + s.sample_timeout, burst=False))
        if len(self._ring) <= 1:
            self._minority = False  # nobody else to reach: the table (and quorum) decide
        return sends

    def _record_sample(self, now: float, answered: bool) -> None:
        s = self.settings
        self._outcomes.append(answered)
        del self._outcomes[: -s.sample_window]
        if self._doubtful() and self._burst_deadline == math.inf:
            self._next_sample = now

    def _doubtful(self) -> bool:
        return self._outcomes.count(False) >= self.settings.sample_failures

    def _start_burst(self, now: float) -> list[Send]:
        s = self.settings
        self._burst_answers = 0
        self._burst_deadline = now + s.sample_timeout
        targets = self._random_alive(s.burst, exclude={self.name})
        if len(targets) < s.burst:
            # A small cluster: ping the few others more than once (each answer counts).
            alive = [self._names_by_key[k] for k in self._ring if self._names_by_key[k] != self.name]
            targets = [alive[i % len(alive)] for i in range(s.burst)] if alive else []
        return [self._sample(name, self._burst_deadline, burst=True) for name in targets]

    def _sample(self, name: str, deadline: float, burst: bool) -> Send:
        nonce = self.rng.getrandbits(32)
        self._samples[nonce] = _Sample(deadline, burst)
        return self._send(name, Ping(self.name, self.incarnation, self._next_seq(), nonce))

    # --- spreading facts ---------------------------------------------------------------------------------

    def _retransmits(self) -> int:
        return self.settings.retransmit_mult * max(1, math.ceil(math.log10(len(self._ring) + 1)))

    def _enqueue(self, fact: Fact) -> None:
        self._queue[fact.name] = _Queued(fact)
        self._recent.pop(fact.name, None)
        self._recent[fact.name] = fact
        self._recent_until[fact.name] = self._clock + self.settings.piggyback_for

    def _piggyback(self, now: float) -> tuple[Fact, ...]:
        """The newest facts of the last ``piggyback_for`` seconds: every heartbeat carries them, so a member
        the epidemic missed learns them from any of its predecessors within one heartbeat interval."""
        if not self._recent:
            return ()
        for name in [n for n, until in self._recent_until.items() if until < now]:
            del self._recent[name], self._recent_until[name]
        return tuple(reversed(list(self._recent.values())[-self.settings.piggyback :]))

    def _take_facts(self, limit: int) -> tuple[Fact, ...]:
        """Up to ``limit`` queued facts (the least sent first, within one datagram's budget); each one leaves
        the queue once sent ``_retransmits()`` times."""
        if not self._queue:
            return ()
        entries = sorted(self._queue.values(), key=lambda entry: entry.transmissions)[:limit]
        most = self._retransmits()
        facts: list[Fact] = []
        budget = FACT_BUDGET
        for entry in entries:
            budget -= len(entry.fact.name) + FACT_OVERHEAD
            if budget < 0 and facts:
                break
            facts.append(entry.fact)
            entry.transmissions += 1
            if entry.transmissions >= most:
                del self._queue[entry.fact.name]
        return tuple(facts)

    def _gossip(self, now: float) -> list[Send]:
        self._next_gossip = now + self.settings.gossip_interval
        if not self._queue:
            return []
        targets = self._random_alive(self.settings.fanout, exclude={self.name})
        if not targets and not self._joined:
            targets = self._random_universe(self.settings.fanout)
        sends = []
        for target in targets:
            facts = self._take_facts(self.settings.gossip_facts)
            if not facts:
                break
            sends.append(self._send(target, Gossip(self.name, self.incarnation, self._next_seq(), facts)))
        return sends

    def _sync_messages(self, to: Address, nonce: int, reply: bool) -> list[Send]:
        """The whole table, in datagram-sized chunks: merging is order-free, so each chunk stands alone."""
        chunks: list[tuple[Fact, ...]] = []
        chunk: list[Fact] = []
        budget = FACT_BUDGET
        for fact in self._table():
            cost = len(fact.name) + FACT_OVERHEAD
            if chunk and (budget < cost or len(chunk) >= self.settings.sync_facts):
                chunks.append(tuple(chunk))
                chunk, budget = [], FACT_BUDGET
            chunk.append(fact)
            budget -= cost
        chunks.append(tuple(chunk))
        return [
            Send(to, Sync(self.name, self.incarnation, self._next_seq(), nonce, reply, c)) for c in chunks
        ]

    def _join(self, now: float) -> list[Send]:
        """Ask a few members of the universe for their tables; alone after ``join_timeout``, go on alone."""
        self._join_attempts += 1
        self._join_deadline = now + self.settings.join_timeout
        if self._join_attempts > 1:
            self._joined = True  # nobody answered: first one up, or cut off (then the isolation rule holds)
            return []
        names = sorted((n for n in self._universe if n != self.name), key=ring_key)
        if not names:
            self._joined = True
            return []
        mine = ring_key(self.name)
        index = bisect.bisect_left([ring_key(n) for n in names], mine)
        k = self.settings.watchers
        picks = {names[(index + i) % len(names)] for i in range(-k, k)}
        picks |= set(self._random_universe(2))
        picks.discard(self.name)
        sends: list[Send] = []
        nonce = self.rng.getrandbits(32)
        for name in sorted(picks):
            sends += self._sync_messages(self._universe[name], nonce, reply=False)
        return sends

    def _reconnect(self, now: float) -> list[Send]:
        """Ping one member of the universe this member holds dead or does not know: partitions heal, and a
        member that started alone finds the others."""
        candidates = []
        for name in self._universe:
            fact = self.fact(name)
            if name != self.name and (fact is None or fact.status == DEAD):
                candidates.append(name)
        if not candidates:
            return []
        name = self.rng.choice(candidates)
        if self.fact(name) is None:
            return self._sync_messages(self._universe[name], self.rng.getrandbits(32), reply=False)
        return [
            self._send(name, Ping(self.name, self.incarnation, self._next_seq(), self.rng.getrandbits(32)))
        ]

    # --- helpers -----------------------------------------------------------------------------------------

    def _random_alive(self, count: int, exclude: set[str] | frozenset[str]) -> list[str]:
        ring = self._ring
        if len(ring) <= 1 or count <= 0:
            return []
        chosen: list[str] = []
        for _ in range(count * 4):
            name = self._names_by_key[ring[self.rng.randrange(len(ring))]]
            if name not in exclude and name not in chosen:
                chosen.append(name)
                if len(chosen) == count:
                    break
        return chosen

    def _random_universe(self, count: int) -> list[str]:
        names = [n for n in self._universe if n != self.name]
        return self.rng.sample(names, min(count, len(names)))

    def _send(self, name: str, message: Message) -> Send:
        return Send(self._universe[name], message)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq
