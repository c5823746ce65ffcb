"""TLS, mTLS and API keys towards Temporal: settings from env and profile, into Client.connect.

`temporal server start-dev` has no TLS flags, so the wire is proven in tests/e2e/test_security.py
through a TLS-terminating proxy in front of a dev server. Here: what reaches ``Client.connect``,
captured by an injected ``connect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import TLSConfig

from stigmer.config import Config
from stigmer.errors import ConfigError
from stigmer.security import Secret
from stigmer.temporal.connection import CreatorTargets, TemporalConnection
from stigmer.temporal.tls import TemporalSecurity, load_profile, temporal_client_settings

API_KEY = "tmprl-api-key-that-must-not-leak-0123456789"


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("cert", "key", "ca"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(f"-----{name.upper()} v1-----\n".encode())
    return files


def no_profile(env: Mapping[str, str]) -> Any:
    raise AssertionError("temporalio.envconfig must not be consulted without its variables")


def test_nothing_set_means_plaintext_and_no_profile() -> None:
    settings = temporal_client_settings(
        {"TEMPORAL_HOST_PORT": "x:1", "TEMPORAL_NAMESPACE": "n"}, profile_loader=no_profile
    )
    assert settings.security == TemporalSecurity()
    assert settings.security.connect_kwargs() == {} and settings.security.describe() == "plaintext"


def test_mtls_from_our_variables_reads_the_files_at_every_dial(pems: dict[str, Path]) -> None:
    env = {
        "TEMPORAL_TLS_CERT": str(pems["cert"]),
        "TEMPORAL_TLS_KEY": str(pems["key"]),
        "TEMPORAL_TLS_CA": str(pems["ca"]),
    }
    security = temporal_client_settings(env, profile_loader=no_profile).security
    assert security.describe() == "mTLS"
    first = security.connect_kwargs()["tls"]
    assert first == TLSConfig(
        server_root_ca_cert=b"-----CA v1-----\n",
        client_cert=b"-----CERT v1-----\n",
        client_private_key=b"-----KEY v1-----\n",
    )
    pems["cert"].write_bytes(b"-----CERT v2-----\n")  # renewed on disk: the next dial uses it
    assert security.connect_kwargs()["tls"].client_cert == b"-----CERT v2-----\n"


def test_a_ca_alone_turns_tls_on(pems: dict[str, Path]) -> None:
    security = temporal_client_settings({"TEMPORAL_TLS_CA": str(pems["ca"])}, profile_loader=no_profile).security
    assert security.describe() == "TLS"
    assert security.connect_kwargs() == {"tls": TLSConfig(server_root_ca_cert=b"-----CA v1-----\n")}


def test_an_api_key_alone_leaves_tls_to_temporals_default_and_never_prints() -> None:
    security = temporal_client_settings({"TEMPORAL_API_KEY": f" {API_KEY} "}, profile_loader=no_profile).security
    # No "tls" argument: Client.connect turns TLS on by itself when an API key is given.
    assert security.connect_kwargs() == {"api_key": API_KEY}
    assert security.describe() == "TLS + API key"
    assert API_KEY not in repr(security) and API_KEY not in str(security)
    config = Config.from_env({"TEMPORAL_API_KEY": API_KEY})
    assert API_KEY not in repr(config) and API_KEY not in repr(config.connection_settings())


@pytest.mark.parametrize("given", ["TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY"])
def test_cert_and_key_go_together(pems: dict[str, Path], given: str) -> None:
    with pytest.raises(ConfigError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"):
        temporal_client_settings({given: str(pems["cert"])}, profile_loader=no_profile)


def test_a_missing_file_is_named_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TEMPORAL_TLS_CA=.*nope\.pem: no readable file there"):
        temporal_client_settings({"TEMPORAL_TLS_CA": str(tmp_path / "nope.pem")}, profile_loader=no_profile)


def test_temporal_address_is_an_alias_and_host_port_wins() -> None:
    assert Config.from_env({"TEMPORAL_ADDRESS": "t.example:7233"}).temporal_host_port == "t.example:7233"
    both = {"TEMPORAL_ADDRESS": "t.example:7233", "TEMPORAL_HOST_PORT": "h.example:7233"}
    assert Config.from_env(both).temporal_host_port == "h.example:7233"
    assert Config.from_env(both, temporal_host_port="flag:7233").temporal_host_port == "flag:7233"


# ------------------------------------------------------------------------------ temporalio.envconfig


def write_profile(tmp_path: Path, ca: Path) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text(f"""
[profile.default]
address = "default.example:7233"

[profile.cloud]
address = "ns.acct.tmprl.cloud:7233"
namespace = "ns.acct"
api_key = "{API_KEY}"

[profile.cloud.tls]
server_name = "ns.acct.tmprl.cloud"
server_ca_cert_path = "{ca}"

[profile.cloud.grpc_meta]
x-team = "agents"
""")
    return path


def test_a_profile_supplies_address_namespace_tls_and_key(tmp_path: Path, pems: dict[str, Path]) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(write_profile(tmp_path, pems["ca"])), "TEMPORAL_PROFILE": "cloud"}
    config = Config.from_env(env)
    assert config.temporal_host_port == "ns.acct.tmprl.cloud:7233" and config.namespace == "ns.acct"
    security = config.temporal_security
    assert security is not None and security.describe() == "TLS + API key + 1 gRPC header(s)"
    assert security.connect_kwargs() == {
        "tls": TLSConfig(server_root_ca_cert=b"-----CA v1-----\n", domain="ns.acct.tmprl.cloud"),
        "rpc_metadata": {"x-team": "agents"},
        "api_key": API_KEY,
    }


def test_our_variables_and_flags_win_over_the_profile(tmp_path: Path, pems: dict[str, Path]) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(b"other")
    env = {
        "TEMPORAL_CONFIG_FILE": str(write_profile(tmp_path, pems["ca"])),
        "TEMPORAL_PROFILE": "cloud",
        "TEMPORAL_HOST_PORT": "mine:7233",
        "TEMPORAL_TLS_CA": str(other_ca),
        "TEMPORAL_API_KEY": "mine-key",
    }
    config = Config.from_env(env, namespace="flag-ns")
    assert config.temporal_host_port == "mine:7233" and config.namespace == "flag-ns"
    assert config.temporal_security is not None
    kwargs = config.temporal_security.connect_kwargs()
    assert kwargs["tls"].server_root_ca_cert == b"other" and kwargs["api_key"] == "mine-key"


def test_the_profile_file_is_opt_in(tmp_path: Path, pems: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's default profile must not redirect the server unless asked for.
    home = tmp_path / "home"
    (home / ".config" / "temporalio").mkdir(parents=True)
    write_profile(home / ".config" / "temporalio", pems["ca"])
    homes = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    for name, value in homes.items():  # the SDK finds its default file from the process's own HOME
        monkeypatch.setenv(name, value)
    assert Config.from_env({"TEMPORAL_TLS": "true", **homes}).temporal_host_port == "localhost:7233"
    asked = Config.from_env({"TEMPORAL_PROFILE": "default", **homes})
    assert asked.temporal_host_port == "default.example:7233"


def test_temporals_own_variables_work_without_a_file(pems: dict[str, Path]) -> None:
    env = {
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pems["cert"]),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pems["key"]),
        "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
    }
    security = temporal_client_settings(env, profile_loader=load_profile).security
    assert security.describe() == "mTLS"
    assert security.connect_kwargs()["tls"] == TLSConfig(
        domain="temporal.internal", client_cert=b"-----CERT v1-----\n", client_private_key=b"-----KEY v1-----\n"
    )
    disabled = temporal_client_settings({"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": API_KEY})
    assert disabled.security.connect_kwargs() == {"tls": False, "api_key": API_KEY}


def test_an_unknown_profile_is_a_config_error(tmp_path: Path, pems: dict[str, Path]) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(write_profile(tmp_path, pems["ca"])), "TEMPORAL_PROFILE": "nope"}
    with pytest.raises(ConfigError, match=r"Temporal client configuration \(profile nope in .*temporal\.toml\)"):
        Config.from_env(env)


# ------------------------------------------------------------------------------ into Client.connect


async def test_dial_passes_tls_and_api_key_to_client_connect(tmp_path: Path, pems: dict[str, Path]) -> None:
    from stigmer.store import Store
    from stigmer.temporal.agents import EchoAgentRunner

    env = {
        "TEMPORAL_TLS_CERT": str(pems["cert"]),
        "TEMPORAL_TLS_KEY": str(pems["key"]),
        "TEMPORAL_TLS_CA": str(pems["ca"]),
        "TEMPORAL_API_KEY": API_KEY,
        "TEMPORAL_ADDRESS": "cloud.example:7233",
    }
    settings = Config.from_env(env).connection_settings()
    captured: list[tuple[str, dict[str, Any]]] = []

    async def connect(target: str, **kwargs: Any) -> object:
        captured.append((target, kwargs))
        return object()

    store = Store.open(tmp_path / "data")
    try:
        connection = TemporalConnection(
            settings,
            store=store,
            runner=EchoAgentRunner(),
            connect=connect,
            targets=CreatorTargets(agent_execution=print, workflow_execution=print, workflow_validation=print),
        )
        await connection.dial()
    finally:
        store.close()
    # Two connections (the workers' and the API's, see API_RETRY), both secured the same way.
    assert len(captured) == 2
    assert sorted("retry_config" in kwargs for _, kwargs in captured) == [False, True]
    for target, kwargs in captured:
        assert target == "cloud.example:7233"
        assert kwargs["api_key"] == API_KEY
        assert kwargs["tls"] == TLSConfig(
            server_root_ca_cert=b"-----CA v1-----\n",
            client_cert=b"-----CERT v1-----\n",
            client_private_key=b"-----KEY v1-----\n",
        )
        assert "keep_alive_config" in kwargs and kwargs["namespace"] == "default"


def test_the_benchmarks_legacy_settings_keep_the_security(pems: dict[str, Path]) -> None:
    from bench.legacy import legacy_settings

    config = Config.from_env({"TEMPORAL_API_KEY": API_KEY})
    assert legacy_settings(config.connection_settings()).security.api_key == Secret(API_KEY)
