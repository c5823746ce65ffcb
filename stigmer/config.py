"""One frozen configuration, built from the environment and then CLI flags (flags win)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stigmer.errors import ConfigError
from stigmer.roles import Role, RoleSpec
from stigmer.security import AUTH_TOKEN_ENV, Secret, is_loopback, token_problem
from stigmer.temporal.names import TaskQueues

if TYPE_CHECKING:
    from stigmer.temporal.connection import ConnectionSettings
    from stigmer.temporal.tls import TemporalSecurity

DEFAULT_TEMPORAL_HOST_PORT = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_ADDRESS = "127.0.0.1:7234"
DEFAULT_DATA_DIR = "~/.stigmer"
#: The built-in echo runner (stigmer.temporal.runners.BUILTIN).
DEFAULT_AGENT_RUNNER = "echo"
#: `stigmer server start`'s defaults (a Config made in code serves no metrics unless told to).
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
DEFAULT_TEMPORAL_METRICS_ADDRESS = "127.0.0.1:9465"
#: What turns a metrics address off.
NO_ADDRESS = "none"

#: env variable -> Config field
ENV = {
    "TEMPORAL_HOST_PORT": "temporal_host_port",
    "TEMPORAL_NAMESPACE": "namespace",
    "STIGMER_SERVER_ADDRESS": "address",
    "STIGMER_DATA_DIR": "data_dir",
    AUTH_TOKEN_ENV: "auth_token",
    "STIGMER_TLS_CERT": "tls_cert",
    "STIGMER_TLS_KEY": "tls_key",
    "STIGMER_DATABASE_URL": "database_url",
    "STIGMER_AGENT_RUNNER": "agent_runner",
    "STIGMER_METRICS_ADDRESS": "metrics_address",
    "STIGMER_TEMPORAL_METRICS_ADDRESS": "temporal_metrics_address",
}
#: Temporal's own name for the address (its CLI and SDKs); TEMPORAL_HOST_PORT wins when both are set.
TEMPORAL_ADDRESS_ALIAS = "TEMPORAL_ADDRESS"


def resolve_data_dir(value: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The data dir: ``value`` (a flag) if given, else STIGMER_DATA_DIR, else ~/.stigmer; ``~`` expanded.

    What :meth:`Config.from_env` uses, and the commands that only need the data dir (``server
    stop``, ``server logs``): those must not refuse to run over unrelated settings."""
    env = os.environ if environ is None else environ
    if value is None or not str(value).strip():
        value = env.get("STIGMER_DATA_DIR", "").strip() or DEFAULT_DATA_DIR
    return Path(str(value)).expanduser()


def _shared_store(url: Secret | None) -> bool:
    return url is not None and url.reveal().strip().lower().startswith(("postgresql:", "postgres:"))


def split_host_port(value: str, *, name: str) -> tuple[str, int]:
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{name} must look like HOST:PORT (e.g. 127.0.0.1:7233), got {value!r}")
    return host.strip("[]"), int(port_text)


@dataclass(frozen=True, kw_only=True)
class Config:
    temporal_host_port: str = DEFAULT_TEMPORAL_HOST_PORT
    namespace: str = DEFAULT_NAMESPACE
    address: str = DEFAULT_ADDRESS
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).expanduser())
    health_interval: float = 15.0
    queues: TaskQueues = field(default_factory=TaskQueues)
    #: Seconds a shutdown waits for in-flight RPCs to finish.
    grace: float = 5.0
    #: Every RPC but health must carry ``authorization: Bearer <token>`` (Secret: never printed).
    auth_token: Secret | None = None
    #: PEM certificate and key: the API speaks TLS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Allow a non-loopback address with neither token nor TLS (the server then warns loudly).
    insecure: bool = False
    #: Run workflow code in the Temporal SDK's sandbox (slower creates; see workers.workflow_runner).
    workflow_sandbox: bool = False
    #: Stop (exit 69) after this many seconds without CONNECTED; None: never (stigmer.outage).
    exit_after_outage: float | None = None
    #: TLS / API key for Temporal (stigmer.temporal.tls); None: plaintext, no key.
    temporal_security: TemporalSecurity | None = None
    #: Seconds a create's request_id keeps returning what it created (AIP-155).
    request_id_ttl: float = 24 * 3600.0
    #: Where the store lives (stigmer.store.urls); None: SQLite in the data dir. A Secret: it may carry a password.
    database_url: Secret | None = None
    #: What this process runs (stigmer.roles): the API, the workers (``worker_queues``), or both.
    role: RoleSpec = field(default_factory=RoleSpec)
    #: What answers agent executions: a name in the entry point group ``stigmer.agent_runners`` or
    #: ``module:attr``; loaded and checked at start (stigmer.temporal.runners).
    agent_runner: str = DEFAULT_AGENT_RUNNER
    #: Serve Prometheus metrics at http://HOST:PORT/metrics (stigmer.metrics); None (or "none"): not.
    metrics_address: str | None = None
    #: Where the Temporal SDK serves its own metrics (its process-wide Runtime); None (or "none"): not.
    temporal_metrics_address: str | None = None

    def __post_init__(self) -> None:
        split_host_port(self.temporal_host_port, name="TEMPORAL_HOST_PORT / --temporal-host-port")
        if "," in self.address:
            raise ConfigError(
                f"STIGMER_SERVER_ADDRESS / --address holds a list ({self.address}): clients may name several "
                "servers, but a server listens on one HOST:PORT; give this server its own --address"
            )
        split_host_port(self.address, name="STIGMER_SERVER_ADDRESS / --address")
        for name, flag in (
            ("metrics_address", "STIGMER_METRICS_ADDRESS / --metrics-address"),
            ("temporal_metrics_address", "STIGMER_TEMPORAL_METRICS_ADDRESS / --temporal-metrics-address"),
        ):
            value = getattr(self, name)
            if value is not None and value.strip().lower() in ("", NO_ADDRESS):
                object.__setattr__(self, name, None)  # frozen: normalised once, here
            elif value is not None:
                split_host_port(value, name=f"{flag} (or `{NO_ADDRESS}`)")
        if not self.namespace.strip():
            raise ConfigError("TEMPORAL_NAMESPACE / --namespace must not be empty")
        if self.exit_after_outage is not None and not self.exit_after_outage > 0:
            raise ConfigError(f"--exit-after-outage must be > 0 seconds, got {self.exit_after_outage}")
        if self.role.role is not Role.ALL and not _shared_store(self.database_url):
            raise ConfigError(
                f"--role {self.role.role.value} needs a store the other processes share: set "
                "STIGMER_DATABASE_URL / --database-url to postgresql://... (SQLite is one process's file; "
                "run --role all to use it)"
            )
        if not self.request_id_ttl > 0:
            raise ConfigError(f"--request-id-ttl must be > 0 seconds, got {self.request_id_ttl}")
        if not self.health_interval > 0:
            raise ConfigError(f"--health-interval must be > 0 seconds, got {self.health_interval}")
        self._check_listener_protection()

    def _check_listener_protection(self) -> None:
        if self.auth_token is not None and (problem := token_problem(self.auth_token.reveal())):
            raise ConfigError(f"{AUTH_TOKEN_ENV} / --auth-token {problem} (the value is not shown)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                "--tls-cert and --tls-key (STIGMER_TLS_CERT / STIGMER_TLS_KEY) go together: give both or neither"
            )
        host, _ = split_host_port(self.address, name="STIGMER_SERVER_ADDRESS / --address")
        if not is_loopback(host) and self.auth_token is None and self.tls_cert is None and not self.insecure:
            raise ConfigError(
                f"refusing to listen on {self.address}: other machines can reach that address and nothing "
                f"protects it. Set {AUTH_TOKEN_ENV} (or --auth-token) and/or --tls-cert/--tls-key, "
                "listen on 127.0.0.1 (the default), or pass --insecure to accept the risk"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then the environment, then ``overrides`` that are not None (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV.items():
            if env.get(var, "").strip():
                values[name] = env[var].strip()
        if "temporal_host_port" not in values and env.get(TEMPORAL_ADDRESS_ALIAS, "").strip():
            values["temporal_host_port"] = env[TEMPORAL_ADDRESS_ALIAS].strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["data_dir"] = resolve_data_dir(values.get("data_dir"), env)
        for path_field in ("tls_cert", "tls_key"):
            if path_field in values:
                values[path_field] = Path(str(values[path_field])).expanduser()
        for secret in ("auth_token", "database_url"):
            if isinstance(values.get(secret), str):
                values[secret] = Secret(values[secret])
        values.setdefault("queues", TaskQueues.from_env(env))
        if "temporal_security" not in values:
            from stigmer.temporal.tls import temporal_client_settings

            temporal = temporal_client_settings(env)
            values["temporal_security"] = temporal.security
            # Temporal's profile comes last: our variables and flags win over it.
            if temporal.address and "temporal_host_port" not in values:
                values["temporal_host_port"] = temporal.address
            if temporal.namespace and "namespace" not in values:
                values["namespace"] = temporal.namespace
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def connection_settings(self) -> ConnectionSettings:
        from stigmer.temporal.connection import ConnectionSettings  # heavy (temporalio): only for the server
        from stigmer.temporal.tls import TemporalSecurity

        return ConnectionSettings(
            host_port=self.temporal_host_port,
            namespace=self.namespace,
            queues=self.queues,
            health_interval=self.health_interval,
            workflow_sandbox=self.workflow_sandbox,
            security=self.temporal_security or TemporalSecurity(),
            workers=self.role.worker_names,
            creators=self.role.serves_api,
        )
