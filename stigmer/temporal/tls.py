"""TLS, mTLS and API keys for the connection to Temporal (production, Temporal Cloud).

Where the settings come from, first wins for each one:

1. Stigmer's variables: ``TEMPORAL_TLS_CERT`` + ``TEMPORAL_TLS_KEY`` (client certificate and key
   for mTLS), ``TEMPORAL_TLS_CA`` (CA that signed Temporal's certificate), ``TEMPORAL_API_KEY``,
   and ``TEMPORAL_ADDRESS`` as an alias of ``TEMPORAL_HOST_PORT`` (handled in ``stigmer.config``).
2. Temporal's own client configuration (``temporalio.envconfig``), the same one the ``temporal``
   CLI reads: its variables (``TEMPORAL_TLS``, ``TEMPORAL_TLS_SERVER_NAME``,
   ``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_GRPC_META_*`` ...) and, only when
   ``TEMPORAL_PROFILE`` or ``TEMPORAL_CONFIG_FILE`` is set, a profile from its TOML file. The file
   is opt-in so that a developer's ``temporal`` CLI profile (say, pointing at Temporal Cloud) does
   not silently redirect a local stigmer server.

Certificate files are checked at startup (a typo fails fast, naming the variable) but *read at
every dial*, so a renewed client certificate is picked up at the next reconnection without a
restart. This module imports temporalio only inside functions: ``stigmer.config`` imports it and
the CLI's client commands must stay quick to start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmer.errors import ConfigError
from stigmer.security import Secret

CERT_ENV = "TEMPORAL_TLS_CERT"
KEY_ENV = "TEMPORAL_TLS_KEY"
CA_ENV = "TEMPORAL_TLS_CA"
API_KEY_ENV = "TEMPORAL_API_KEY"
PROFILE_ENV = "TEMPORAL_PROFILE"
CONFIG_FILE_ENV = "TEMPORAL_CONFIG_FILE"

#: Variables only temporalio.envconfig understands; when none is set it is not even imported.
ENVCONFIG_VARS = (
    PROFILE_ENV,
    CONFIG_FILE_ENV,
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
)
GRPC_META_PREFIX = "TEMPORAL_GRPC_META_"

#: A PEM file (read at each dial) or PEM data given inline (envconfig's ``*_DATA`` variables).
PemSource = Path | bytes


@dataclass(frozen=True, kw_only=True)
class TemporalSecurity:
    """How to secure the Temporal connection; turns into ``Client.connect`` keyword arguments."""

    #: True/False: TLS on/off; None: Temporal's default (TLS exactly when an API key is set).
    tls: bool | None = None
    client_cert: PemSource | None = None
    client_key: PemSource | None = field(default=None, repr=False)
    server_ca: PemSource | None = None
    #: SNI and the name Temporal's certificate is checked against (TLSConfig.domain).
    server_name: str | None = None
    api_key: Secret | None = None
    #: Extra gRPC headers from the profile; may carry credentials, so never printed.
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.tls if self.tls is not None else self.api_key is not None

    def describe(self) -> str:
        """For logs and status: what protects the connection, never a secret."""
        text = ("mTLS" if self.client_cert is not None else "TLS") if self.uses_tls else "plaintext"
        if self.api_key is not None:
            text += " + API key"
        if self.rpc_metadata:
            text += f" + {len(self.rpc_metadata)} gRPC header(s)"
        return text

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Client.connect``; reads the PEM files now (see module doc)."""
        kwargs: dict[str, Any] = {}
        if self.tls is False:
            kwargs["tls"] = False
        elif self.tls:
            sources = (self.server_ca, self.client_cert, self.client_key, self.server_name)
            if any(source is not None for source in sources):
                from temporalio.service import TLSConfig

                kwargs["tls"] = TLSConfig(
                    server_root_ca_cert=read_pem(self.server_ca),
                    domain=self.server_name,
                    client_cert=read_pem(self.client_cert),
                    client_private_key=read_pem(self.client_key),
                )
            else:
                kwargs["tls"] = True  # the system's trusted roots
        if self.rpc_metadata:
            kwargs["rpc_metadata"] = dict(self.rpc_metadata)
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.reveal()
        return kwargs


@dataclass(frozen=True, kw_only=True)
class TemporalClientSettings:
    """What Temporal's client configuration contributes besides security (lowest precedence)."""

    address: str | None = None
    namespace: str | None = None
    security: TemporalSecurity = field(default_factory=TemporalSecurity)


ProfileLoader = Callable[[Mapping[str, str]], Any]


def load_profile(env: Mapping[str, str]) -> Any:
    """temporalio.envconfig's profile (a ``ClientConfigProfile``) for this environment."""
    from temporalio.envconfig import ClientConfigProfile

    use_file = bool(env.get(PROFILE_ENV, "").strip() or env.get(CONFIG_FILE_ENV, "").strip())
    try:
        return ClientConfigProfile.load(
            profile=env.get(PROFILE_ENV, "").strip() or None,
            disable_file=not use_file,
            override_env_vars=dict(env),
        )
    except Exception as err:  # the bridge raises its own ConfigError type; say which settings failed
        where = f"profile {env.get(PROFILE_ENV) or 'default'}"
        if env.get(CONFIG_FILE_ENV):
            where += f" in {env[CONFIG_FILE_ENV]}"
        raise ConfigError(f"Temporal client configuration ({where}) cannot be used: {err}") from err


def temporal_client_settings(
    environ: Mapping[str, str] | None = None, *, profile_loader: ProfileLoader = load_profile
) -> TemporalClientSettings:
    """Merge Stigmer's variables over Temporal's client configuration; ConfigError names the culprit."""
    env = os.environ if environ is None else environ
    wants_profile = any(env.get(var, "").strip() for var in ENVCONFIG_VARS) or any(
        key.startswith(GRPC_META_PREFIX) for key in env
    )
    profile = profile_loader(env) if wants_profile else None
    profile_tls = getattr(profile, "tls", None)

    cert = _path_var(env, CERT_ENV)
    key = _path_var(env, KEY_ENV)
    ca = _path_var(env, CA_ENV)
    if (cert is None) != (key is None):
        raise ConfigError(
            f"{CERT_ENV} and {KEY_ENV} go together (the client certificate for mTLS and its "
            "private key): set both or neither"
        )
    if cert is not None or ca is not None:
        tls: bool | None = True
    elif profile_tls is not None:
        tls = not profile_tls.disabled
    else:
        tls = None
    api_key = env.get(API_KEY_ENV, "").strip() or (getattr(profile, "api_key", None) or "").strip()
    security = TemporalSecurity(
        tls=tls,
        client_cert=cert if cert is not None else _profile_source(profile_tls, "client_cert"),
        client_key=key if key is not None else _profile_source(profile_tls, "client_private_key"),
        server_ca=ca if ca is not None else _profile_source(profile_tls, "server_root_ca_cert"),
        server_name=getattr(profile_tls, "server_name", None) or None,
        api_key=Secret(api_key) if api_key else None,
        rpc_metadata=dict(getattr(profile, "grpc_meta", None) or {}),
    )
    return TemporalClientSettings(
        address=getattr(profile, "address", None) or None,
        namespace=getattr(profile, "namespace", None) or None,
        security=security,
    )


def _path_var(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={value}: no readable file there (a PEM file is expected)")
    return path


def _profile_source(profile_tls: Any, attribute: str) -> PemSource | None:
    source = getattr(profile_tls, attribute, None)
    if source is None:
        return None
    if isinstance(source, str):
        return source.encode()
    if isinstance(source, Path) and not source.is_file():
        raise ConfigError(f"Temporal client configuration: tls {attribute} file {source} does not exist")
    return source  # type: ignore[no-any-return]


def read_pem(source: PemSource | None) -> bytes | None:
    """The PEM bytes of a file (read now) or of inline data; None stays None."""
    if source is None or isinstance(source, bytes):
        return source
    return source.read_bytes()
