"""App hosts on one machine: a network namespace per host, and the stores they share.

Used by `tests/integration/test_hosts.py` and by `make bench-cluster`. Nothing here knows
about pytest: callers decide what "network namespaces are not available" means.

`HostNetwork` builds, in the root namespace, two Linux bridges on private subnets that
nothing else on the machine uses (chosen at random in 10.213.0.0/16 and checked against
every address and route):

```
  root namespace                                   namespace sg-host-N-<tag>
  front bridge  10.213.F.1/24 ---- veth ---- front0 10.213.F.(10+N)   app servers listen here
  store bridge  10.213.S.1/24 ---- veth ---- store0 10.213.S.(10+N)   reaches the stores
```

The load generator runs in the root namespace and reaches each host's servers on the
front network; the stores (`BridgeRedisCluster`, `BridgePostgres`) listen on loopback and
on the store bridge's address. The two networks are separate so that cutting a host's
store link (`cut`, which sets the bridge's end of its veth down, as a pulled cable would)
leaves the host reachable by its clients: it can still answer, with a 503. A namespace
has no default route, so no traffic leaves the machine: only loopback and the addresses
made here are ever used.

Everything is named with a tag of the creating process's id (`sg-host-2-<tag>`, links
`sgbf<tag>`, `sgs2<tag>`, temporary directories `sessionguard-hosts-<tag>-*`), so a run
killed before it could clean up is recognised by the next one, whose `create` removes the
leftovers of every tag whose process is gone: processes left in its namespaces or
started from its directories, then the namespaces, links and directories. A run still
alive keeps its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import Managed, PostgresServer, RedisCluster

__all__ = [
    "BridgePostgres",
    "BridgeRedisCluster",
    "Host",
    "HostNetwork",
    "netns_unavailable",
    "remove_stale",
]

NAMESPACE_PREFIX = "sg-host-"
DIRECTORY_PREFIX = "sessionguard-hosts-"
#: Where the subnets are picked: 10.213.F.0/24 (front) and 10.213.F+1.0/24 (store).
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
IP_TIMEOUT = 10.0
_LINK = re.compile(r"^sg(?:b[fs]|[fs]\d)([0-9a-z]+)$")
_NAMESPACE = re.compile(rf"^{NAMESPACE_PREFIX}\d+-([0-9a-z]+)$")
_DIRECTORY = re.compile(rf"^{DIRECTORY_PREFIX}([0-9a-z]+)-")
_counter = itertools.count()


def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; its stdout. Raises `RuntimeError` with ip's message when it fails."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (not Linux, no `ip`, not allowed), or `None`."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"{NAMESPACE_PREFIX}0-{_new_tag()}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe, check=False)
    return None


def _new_tag() -> str:
    """This process's id in base 36 and a counter digit: unique among live runs, and
    `_owner` reads the process back from it."""
    return _base36(os.getpid()) + _base36(next(_counter) % 36)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text


def _owner_alive(tag: str) -> bool:
    """Whether the process that made the objects tagged `tag` is still running."""
    try:
        pid = int(tag[:-1], 36)
    except ValueError:
        return True  # not one of ours: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Host:
    """One app host: a network namespace with an address on each network."""

    index: int  # 1, 2, 3, ...
    namespace: str
    front_address: str  # where its servers listen, for the load generator
    store_address: str  # its address on the store network
    front_link: str  # the root namespace's end of its veth pairs
    store_link: str

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside the host's namespace (`ip netns exec` execs them: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def pids(self) -> list[int]:
        """The processes running in the namespace now."""
        out = ip("netns", "pids", self.namespace, check=False)
        return [int(word) for word in out.split() if word.isdigit()]


@dataclass
class HostNetwork(Managed):
    """`hosts` namespaces on a front and a store network; a context manager.

    `create()` (or entering the context) removes stale leftovers of killed runs first,
    then builds everything; `remove()` (leaving the context) kills whatever still runs in
    the namespaces and deletes every namespace, link and directory this object made, even
    after a partial `create()`. Both are idempotent.
    """

    hosts_count: int = 3
    tag: str = field(default_factory=_new_tag)
    hosts: list[Host] = field(default_factory=list)
    front_address: str = ""  # the front bridge's address (the load generator's side)
    store_address: str = ""  # the store bridge's address: the stores listen here
    store_subnet: str = ""
    _made: list[str] = field(default_factory=list)  # links and namespaces, for remove()
    _directories: list[Path] = field(default_factory=list)

    @property
    def front_bridge(self) -> str:
        return f"sgbf{self.tag}"

    @property
    def store_bridge(self) -> str:
        return f"sgbs{self.tag}"

    def create(self) -> None:
        remove_stale()
        try:
            front, store = _free_subnets()
            self.front_address = str(front.network_address + 1)
            self.store_address = str(store.network_address + 1)
            self.store_subnet = str(store)
            for bridge, net in ((self.front_bridge, front), (self.store_bridge, store)):
                ip("link", "add", bridge, "type", "bridge")
                self._made.append(bridge)
                ip("addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", bridge)
                ip("link", "set", bridge, "up")
            for index in range(1, self.hosts_count + 1):
                self.hosts.append(self._add_host(index, front, store))
        except BaseException:
            self.remove()
            raise

    def _add_host(
        self, index: int, front: ipaddress.IPv4Network, store: ipaddress.IPv4Network
    ) -> Host:
        namespace = f"{NAMESPACE_PREFIX}{index}-{self.tag}"
        ip("netns", "add", namespace)
        self._made.append(namespace)
        host = Host(
            index=index,
            namespace=namespace,
            front_address=str(front.network_address + 10 + index),
            store_address=str(store.network_address + 10 + index),
            front_link=f"sgf{index}{self.tag}",
            store_link=f"sgs{index}{self.tag}",
        )
        ip("-n", namespace, "link", "set", "lo", "up")
        for link, inner, bridge, address, net in (
            (host.front_link, "front0", self.front_bridge, host.front_address, front),
            (host.store_link, "store0", self.store_bridge, host.store_address, store),
        ):
            ip("link", "add", link, "type", "veth", "peer", "name", inner, "netns", namespace)
            ip("link", "set", link, "master", bridge, "up")
            ip("-n", namespace, "addr", "add", f"{address}/{net.prefixlen}", "dev", inner)
            ip("-n", namespace, "link", "set", inner, "up")
        return host

    def directory(self, name: str) -> Path:
        """A new temporary directory of this network's (removed by `remove()`); servers
        started from it are recognised as leftovers of this run if it is killed."""
        path = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{self.tag}-{name}-"))
        self._directories.append(path)
        return path

    def cut(self, host: Host) -> None:
        """Take the host's store link down (the bridge's end): it can no longer reach the
        stores, and its clients can still reach it."""
        ip("link", "set", host.store_link, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.store_link, "up")

    def remove(self) -> None:
        errors: list[str] = []
        for host in self.hosts:
            _kill(host.pids())
        for name in reversed(self._made):
            try:
                if name.startswith(NAMESPACE_PREFIX):
                    ip("netns", "del", name)  # takes the host's ends of its veths with it
                else:
                    ip("link", "del", name)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
        self._made.clear()
        self.hosts.clear()
        for directory in self._directories:
            shutil.rmtree(directory, ignore_errors=True)
        self._directories.clear()
        if errors:
            raise RuntimeError("could not remove the host network: " + "; ".join(errors))

    def _enter(self) -> None:
        self.create()

    def _exit(self, *, failed: bool) -> None:
        self.remove()


def _free_subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Two adjacent /24s of `SUBNET_POOL` that no address or route of the machine touches."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        match = re.search(r"\binet (\S+)", line)
        if match:
            used.append(ipaddress.ip_interface(match.group(1)).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unicast", "blackhole", "unreachable"):
            words = words[1:]
        if words and words[0] != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(words[0], strict=False))
    pairs = list(SUBNET_POOL.subnets(new_prefix=23))
    random.shuffle(pairs)
    for pair in pairs:
        if not any(pair.overlaps(net) for net in used):
            front, store = pair.subnets(new_prefix=24)
            return front, store
    raise RuntimeError(f"no free pair of /24 subnets left in {SUBNET_POOL}")


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_using(path: str) -> list[int]:
    """Processes started from under `path` or naming it on their command line (a killed
    run's stores: redis-server and postgres rename themselves, but stay in their `--dir`
    and data directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile, or not ours to look at
        if cwd == path or cwd.startswith(path + "/") or any(path.encode() in a for a in argv):
            found.append(int(entry))
    return found


def remove_stale() -> list[str]:
    """Remove what killed runs left: for each tag whose process is gone, the processes in
    its namespaces or started from its directories, then the namespaces, links and
    directories. Returns what was removed."""
    removed: list[str] = []
    for line in ip("netns", "list").splitlines():
        name = line.split(" ", 1)[0]
        match = _NAMESPACE.match(name)
        if match and not _owner_alive(match.group(1)):
            _kill([int(w) for w in ip("netns", "pids", name, check=False).split() if w.isdigit()])
            ip("netns", "del", name, check=False)
            removed.append(name)
    tmp = Path(tempfile.gettempdir())
    for path in tmp.glob(f"{DIRECTORY_PREFIX}*"):
        match = _DIRECTORY.match(path.name)
        if match and not _owner_alive(match.group(1)):
            _kill(_pids_using(str(path)))
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    for link in json.loads(ip("-j", "link", "show") or "[]"):
        name = link.get("ifname", "")
        match = _LINK.match(name)
        if match and not _owner_alive(match.group(1)):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


# -- the stores, on the store bridge --------------------------------------------------------


@dataclass
class BridgeRedisCluster(RedisCluster):
    """`RedisCluster` on the store bridge: its nodes also listen on `address` and announce
    it, so that cluster clients in the hosts' namespaces are redirected to addresses they
    can reach."""


@dataclass
class BridgePostgres(PostgresServer):
    """`PostgresServer` that also listens on `address` and trusts `subnet` (the hosts)."""

    subnet: str = "127.0.0.1/32"

    def init(self) -> None:
        super().init()
        with (self.directory / "data" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet} trust\n")
