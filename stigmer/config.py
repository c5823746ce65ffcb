"""One frozen configuration, built from the environment and then CLI flags (flags win)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stigmer.temporal.names import TaskQueues

if TYPE_CHECKING:
    from stigmer.temporal.connection import ConnectionSettings

DEFAULT_TEMPORAL_HOST_PORT = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_ADDRESS = "127.0.0.1:7234"
DEFAULT_DATA_DIR = "~/.stigmer"

#: env variable -> Config field
ENV = {
    "TEMPORAL_HOST_PORT": "temporal_host_port",
    "TEMPORAL_NAMESPACE": "namespace",
    "STIGMER_SERVER_ADDRESS": "address",
    "STIGMER_DATA_DIR": "data_dir",
}


class ConfigError(ValueError):
    """A setting is malformed; the message names the flag or variable and the value."""


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
    #: "fast" (default) or "legacy": the original Go server's design, for side-by-side benchmarks.
    reconnect_mode: str = "fast"

    def __post_init__(self) -> None:
        split_host_port(self.temporal_host_port, name="TEMPORAL_HOST_PORT / --temporal-host-port")
        split_host_port(self.address, name="STIGMER_SERVER_ADDRESS / --address")
        if not self.namespace.strip():
            raise ConfigError("TEMPORAL_NAMESPACE / --namespace must not be empty")
        if self.reconnect_mode not in ("fast", "legacy"):
            raise ConfigError(f"--reconnect-mode must be fast or legacy, got {self.reconnect_mode!r}")
        if not self.health_interval > 0:
            raise ConfigError(f"--health-interval must be > 0 seconds, got {self.health_interval}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then the environment, then ``overrides`` that are not None (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV.items():
            if env.get(var, "").strip():
                values[name] = env[var].strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"])).expanduser()
        values.setdefault("queues", TaskQueues.from_env(env))
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def connection_settings(self) -> ConnectionSettings:
        from stigmer.temporal.connection import ConnectionSettings  # heavy (temporalio): only for the server

        make = ConnectionSettings.legacy if self.reconnect_mode == "legacy" else ConnectionSettings
        return make(
            host_port=self.temporal_host_port,
            namespace=self.namespace,
            queues=self.queues,
            health_interval=self.health_interval,
        )
