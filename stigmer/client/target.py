"""Where the client connects, in gRPC's own terms: one address, several, or a DNS name, and the
channel's service config that balances and retries between them (no balancer of our own).

- ``host:port`` stays as it is: gRPC resolves it through DNS, and a name with several A/AAAA
  records gives several servers.
- ``a:1,b:2`` (IP addresses) becomes gRPC's multi-address target ``ipv4:a:1,b:2`` (``ipv6:[a]:1,[b]:2``).
  A list may not hold host names: gRPC has no target for a list of names (one name with several
  records does that job), and resolving them here once would be a resolver of our own.
- A gRPC target with a scheme (``dns:///name:port``, ``ipv4:...``, ``ipv6:...``, ``unix:...``) is
  checked and used as it is.

The service config picks ``round_robin`` (every call goes to the next READY server; a dead one
drops out until it answers again) and lets gRPC retry UNAVAILABLE on the idempotent methods
only (:data:`RETRIED`); see :data:`RETRY_POLICY` for the bounds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from stigmer.errors import ConfigError
from stigmer.security import TLS_SERVER_NAME_ENV, ClientSecurity, ClientSecurityError

__all__ = [
    "MAX_RECONNECT_BACKOFF_MS",
    "NOT_RETRIED",
    "RETRIED",
    "RETRY_POLICY",
    "RETRY_THROTTLING",
    "SETTING",
    "Target",
    "channel_options",
    "parse_address",
    "service_config",
]

#: How the setting is named in errors (the client's argument defaults to the variable).
SETTING = "STIGMER_SERVER_ADDRESS / --address"
_PASSED_THROUGH = ("unix:", "unix-abstract:")
_EXAMPLE = "e.g. 127.0.0.1:7234, or 10.0.0.1:7234,10.0.0.2:7234"

#: Methods gRPC may send again after UNAVAILABLE: a repeat cannot change the outcome. Creates carry
#: a request_id (the client always sends one unless told "": then the call goes without retries),
#: so a repeat returns the first record; Cancel keeps the first request; the rest only read.
RETRIED: dict[str, tuple[str, ...]] = {
    "stigmer.v1.AgentExecutionService": ("Create", "Get", "List", "Watch", "Cancel"),
    "stigmer.v1.WorkflowService": ("Create", "Validate", "Get", "List"),
    "stigmer.v1.WorkflowExecutionService": ("Create", "Get", "List", "Watch", "Cancel"),
    "stigmer.v1.StatusService": ("GetStatus",),
    "grpc.health.v1.Health": ("Check", "List", "Watch"),
}
#: Never retried by policy: a Delete that landed before its connection broke would find nothing
#: the second time (NOT_FOUND) and lose the record it returns. gRPC's transparent retry of a call
#: that never left the client still applies, as for every method.
NOT_RETRIED: dict[str, tuple[str, ...]] = {
    "stigmer.v1.AgentExecutionService": ("Delete",),
    "stigmer.v1.WorkflowService": ("Delete",),
    "stigmer.v1.WorkflowExecutionService": ("Delete",),
}
#: Three attempts at most, the retries after a random 0-0.1 s and 0-0.2 s: round_robin sends each
#: to the next server. gRPC cannot tell a lost server from a server that answered UNAVAILABLE
#: itself (Temporal or its database away, ``stigmer-connection-state`` in the trailers): that
#: refusal is retried too, since another server may have Temporal. It stays cheap: the retries
#: draw at most one fast reconnect attempt per second from each server, and RETRY_THROTTLING stops
#: retrying on a channel whose calls mostly fail. A Watch is retried only until its first message.
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
#: gRPC's token bucket per channel: each failed call costs 1, each success earns 0.1, and retries
#: stop once half of the 10 tokens are spent (about 5 failures in a row) until successes earn them back.
RETRY_THROTTLING: dict[str, Any] = {"maxTokens": 10, "tokenRatio": 0.1}
#: A server that comes back is used again within this long (gRPC's default cap is 120 s).
MAX_RECONNECT_BACKOFF_MS = 5000


def service_config() -> dict[str, Any]:
    """The channel's service config (JSON-able)."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method} for service, methods in RETRIED.items() for method in methods
                ],
                "retryPolicy": RETRY_POLICY,
            }
        ],
        "retryThrottling": RETRY_THROTTLING,
    }


def channel_options(*, retries: bool = True) -> list[tuple[str, Any]]:
    """Options of a client channel; ``retries=False``: no retries at all, not even transparent ones."""
    return [
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", json.dumps(service_config())),
        # Ours is the only service config: a DNS TXT record (_grpc_config.NAME) cannot replace it.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        # No client-side size cap: a workflow execution with many agent steps can exceed gRPC's 4 MiB.
        ("grpc.max_receive_message_length", -1),
    ]


@dataclass(frozen=True)
class Target:
    """A parsed server address: what the channel dials, and the servers it names."""

    #: As given (stripped): what errors show.
    address: str
    #: What ``grpc.aio.*_channel`` gets.
    grpc_target: str
    #: The host of each server listed (a DNS name counts as one; empty for a unix socket).
    hosts: tuple[str, ...]

    @property
    def several(self) -> bool:
        return len(self.hosts) > 1

    def secured(self, security: ClientSecurity) -> ClientSecurity:
        """``security`` with the name to verify certificates against when a list needs one.

        gRPC checks every server's certificate against one name. With one server that is its
        host; a list of one host on several ports uses that host; a list of several hosts needs
        STIGMER_TLS_SERVER_NAME (ClientSecurityError otherwise).
        """
        if not security.tls or security.server_name or not self.several:
            return security
        hosts = sorted(set(self.hosts))
        if len(hosts) == 1:
            return dataclasses.replace(security, server_name=hosts[0])
        raise ClientSecurityError(
            f"{TLS_SERVER_NAME_ENV} is needed with TLS and several servers ({', '.join(hosts)}): gRPC checks "
            "every server's certificate against one name; set it to the name their certificates carry"
        )


def parse_address(value: str, *, setting: str = SETTING) -> Target:
    """The :class:`Target` for an address setting; ConfigError naming ``setting`` if it cannot work."""
    text = value.strip()
    if not text:
        raise ConfigError(f"{setting} is empty: give HOST:PORT ({_EXAMPLE})")
    lowered = text.lower()
    if lowered.startswith(_PASSED_THROUGH):
        return Target(text, text, ("",))
    if lowered.startswith("dns:"):
        return _dns(text, setting)
    for family in ("ipv4", "ipv6"):
        if lowered.startswith(family + ":"):
            return _ip_list(text, text[len(family) + 1 :].split(","), setting, family=family)
    items = text.split(",")
    if len(items) == 1:
        host, _ = _host_port(items[0], text, setting)
        return Target(text, text, (host,))
    return _ip_list(text, items, setting, family=None)


def _dns(text: str, setting: str) -> Target:
    rest = text[len("dns:") :]
    if rest.startswith("//"):  # dns://[dns-server]/host:port
        _, slash, rest = rest[2:].partition("/")
        if not slash:
            raise ConfigError(f"{setting}: {text!r} must look like dns:///HOST:PORT")
    if "," in rest:
        raise ConfigError(f"{setting}: {text!r} names several hosts; a dns: target names one (with several records)")
    host, _ = _host_port(rest, text, setting)
    return Target(text, text, (host,))


def _ip_list(text: str, items: list[str], setting: str, *, family: str | None) -> Target:
    entries: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    for item in items:
        host, port = _host_port(item, text, setting)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"{setting}: {item.strip()!r} in {text!r} is a host name, and a list of several servers takes IP "
                "addresses only (gRPC's ipv4:/ipv6: targets). For names, give one DNS name whose records list "
                "the servers (HOST:PORT or dns:///HOST:PORT)"
            ) from None
        entries.append((ip, port))
    versions = {ip.version for ip, _ in entries}
    if len(versions) > 1:
        raise ConfigError(f"{setting}: {text!r} mixes IPv4 and IPv6 addresses; gRPC takes a list of one kind only")
    version = versions.pop()
    if family is not None and family != f"ipv{version}":
        raise ConfigError(f"{setting}: {text!r} starts with {family}: but lists IPv{version} addresses")
    seen = [f"{ip}:{port}" if version == 4 else f"[{ip}]:{port}" for ip, port in entries]
    twice = sorted({entry for entry in seen if seen.count(entry) > 1})
    if twice:
        raise ConfigError(f"{setting}: {text!r} lists {', '.join(twice)} twice")
    return Target(text, f"ipv{version}:" + ",".join(seen), tuple(str(ip) for ip, _ in entries))


def _host_port(item: str, whole: str, setting: str) -> tuple[str, int]:
    entry = item.strip()
    where = f"{entry!r}" if entry == whole else f"{entry!r} in {whole!r}"
    if not entry:
        raise ConfigError(f"{setting}: {whole!r} has an empty entry; separate servers with one comma ({_EXAMPLE})")
    if "/" in entry or "@" in entry or any(c.isspace() for c in entry):  # http://..., user@host, a stray space
        raise ConfigError(f"{setting}: {where} must look like HOST:PORT, without a scheme or path ({_EXAMPLE})")
    if entry.startswith("["):  # [IPv6]:port
        close = entry.find("]")
        host, sep, port = entry[1:close], entry[close + 1 : close + 2], entry[close + 2 :]
        if close < 0 or sep != ":":
            raise ConfigError(f"{setting}: {where} must look like [IPv6]:PORT, e.g. [::1]:7234")
    else:
        host, sep, port = entry.rpartition(":")
        if ":" in host:
            raise ConfigError(f"{setting}: {where}: put an IPv6 address in brackets, e.g. [::1]:7234")
    if not sep or not host:
        raise ConfigError(f"{setting}: {where} must look like HOST:PORT ({_EXAMPLE})")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{setting}: {where} has no valid port (1-65535)")
    return host, int(port)
