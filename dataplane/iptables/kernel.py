"""The iptables commands of one address family in the current network namespace (thin: subprocess only).

Which variant (iptables-nft or iptables-legacy) is picked as kube-proxy's image picks it (iptables-wrapper):
the variant holding kubelet's hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY in mangle), else the one
with more rules, else the system's `iptables`. Rules written by one variant are invisible to the other, so
using the node's is what makes our rules meet the node's other rules.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

log = logging.getLogger("dataplane.iptables")

VARIANTS = ("nft", "legacy")
HINT_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")
TIMEOUT = 600.0  # a full restore of 10,000 Services takes tens of seconds on a busy node


class IptablesError(RuntimeError):
    pass


def _run(argv: list[str], text: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IptablesError(f"{argv[0]}: {exc}") from exc


@dataclass(frozen=True)
class Iptables:
    family: int  # 4 or 6
    variant: str  # nft or legacy

    def _tool(self, suffix: str = "") -> str:
        base = "iptables" if self.family == 4 else "ip6tables"
        return f"{base}-{self.variant}{suffix}"

    def restore(self, text: str) -> None:
        """iptables-restore --noflush of `text`; raises IptablesError naming the failing line."""
        result = _run([self._tool("-restore"), "-w", "5", "--noflush"], text, timeout=TIMEOUT)
        if result.returncode != 0:
            raise IptablesError(f"{self._tool('-restore')}: {describe_failure(result.stderr, text)}")

    def restore_chunks(self, chunks: Iterable[str]) -> None:
        """iptables-restore --noflush of input produced as it is written (a full sync of thousands of Services
        never holds its whole text); raises IptablesError naming the failing line when it can."""
        recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=16)
        line = 1
        with tempfile.TemporaryFile("w+") as errors:
            try:
                proc = subprocess.Popen(
                    [self._tool("-restore"), "-w", "5", "--noflush"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    text=True,
                )
            except OSError as exc:
                raise IptablesError(f"{self._tool('-restore')}: {exc}") from exc
            assert proc.stdin is not None
            try:
                for chunk in chunks:
                    recent.append((line, chunk))
                    line += chunk.count("\n")
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it stopped reading: its exit status and stderr say why
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            try:
                code = proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise IptablesError(f"{self._tool('-restore')}: timed out") from exc
            errors.seek(0)
            stderr = errors.read()
        if code != 0:
            raise IptablesError(f"{self._tool('-restore')}: {describe_failure(stderr, recent)}")

    def check(self, text: str) -> str | None:
        """Parse `text` without applying it (iptables-restore --test); the error, or None."""
        result = _run([self._tool("-restore"), "--test", "--noflush"], text, timeout=TIMEOUT)
        return None if result.returncode == 0 else describe_failure(result.stderr, text)

    def list_chain(self, table: str, chain: str) -> list[str] | None:
        """The rules of one chain as `iptables -S` prints them; None when the chain does not exist."""
        result = _run([self._tool(), "-w", "5", "-t", table, "-S", chain])
        if result.returncode != 0:
            if "No chain" in result.stderr or "does not exist" in result.stderr:
                return None
            raise IptablesError(f"{self._tool()} -t {table} -S {chain}: {result.stderr.strip()}")
        return [line for line in result.stdout.splitlines() if line.startswith("-A ")]

    def chain_exists(self, table: str, chain: str) -> bool:
        return self.list_chain(table, chain) is not None

    def save(self, table: str | None = None) -> str:
        argv = [self._tool("-save")] + (["-t", table] if table else [])
        result = _run(argv, timeout=TIMEOUT)
        if result.returncode != 0:
            raise IptablesError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def save_lines(self, table: str | None = None) -> Iterator[str]:
        """The lines of `-save` as it writes them: at 10,000 Services our own ruleset is ~30 MB of text, which
        a caller looking for a few lines should never hold (with its decoded copy and a list of its lines,
        that was ~90 MB on the daemon's peak). Raises IptablesError after the last line if it failed."""
        argv = [self._tool("-save")] + (["-t", table] if table else [])
        with tempfile.TemporaryFile("w+") as errors:
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
            except OSError as exc:
                raise IptablesError(f"{argv[0]}: {exc}") from exc
            assert proc.stdout is not None
            deadline = threading.Timer(TIMEOUT, proc.kill)
            deadline.start()
            try:
                yield from proc.stdout
            finally:
                deadline.cancel()
                proc.stdout.close()  # a caller that stopped early: the tool ends on a broken pipe
                code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise IptablesError(f"{' '.join(argv)}: exit {code}: {errors.read().strip()[:300]}")

    def chain_names(self, table: str) -> set[str]:
        """The user-defined chains of a table, without reading its rules where the variant allows."""
        if self.variant == "nft":
            family = "ip" if self.family == 4 else "ip6"
            result = _run(["nft", "-j", "list", "chains", family], timeout=TIMEOUT)
            if result.returncode == 0:
                return nft_chain_names(result.stdout, table)
            log.warning("event=nft_list_failed error=%s", result.stderr.strip())
        return {line[1:].split()[0] for line in self.save_lines(table) if line.startswith(":")}


def nft_chain_names(listing: str, table: str) -> set[str]:
    """Chain names of `table` in `nft -j list chains` output."""
    names = set()
    for item in json.loads(listing).get("nftables", []):
        chain = item.get("chain")
        if chain and chain.get("table") == table:
            names.add(str(chain["name"]))
    return names


def describe_failure(stderr: str, text: str | Iterable[tuple[int, str]]) -> str:
    """iptables-restore's error, with the input line it names (kube-proxy logs it the same way). `text` is
    the whole input, or the last chunks written with the number of their first line."""
    message = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
    match = re.search(r"line (\d+)", stderr)
    if match:
        number = int(match.group(1))
        for first, chunk in [(1, text)] if isinstance(text, str) else text:
            lines = chunk.splitlines()
            if first <= number < first + len(lines):
                message += f" (line {number}: {lines[number - first]!r})"
                break
    return message


def system_variant() -> str:
    """What the system's `iptables` is (Debian's alternatives): nft or legacy."""
    result = _run(["iptables", "--version"])
    return "legacy" if "legacy" in result.stdout else "nft"


def _rule_count(variant: str) -> int:
    count = 0
    for family in (4, 6):
        try:
            rules = sum(1 for line in Iptables(family, variant).save_lines() if line.startswith("-"))
        except IptablesError:
            continue  # no rules: that variant is not usable here
        count += rules
    return count


def detect_variant() -> tuple[str, str]:
    """(variant, why): which iptables the node uses."""
    for variant in VARIANTS:
        result = _run([f"iptables-{variant}-save", "-t", "mangle"])
        if result.returncode == 0 and any(hint in result.stdout for hint in HINT_CHAINS):
            return variant, "kubelet's hint chain is there"
    counts = {variant: _rule_count(variant) for variant in VARIANTS}
    if counts["nft"] != counts["legacy"]:
        variant = max(counts, key=lambda v: counts[v])
        return variant, f"it holds more rules (nft {counts['nft']}, legacy {counts['legacy']})"
    return system_variant(), "no rules either way: the system's iptables"
