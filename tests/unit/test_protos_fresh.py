"""The committed stubs in stigmer/api are exactly what tools/gen_protos.py makes of the .proto files.

What is compared: every generated file byte for byte, except the generator's version stamps
(``# Protobuf Python Version``, the ``ValidateProtobufRuntimeVersion(...)`` numbers, and
``GRPC_GENERATED_VERSION``). Those say which grpcio-tools ran, not what the API is; masking them
lets someone with a newer patch release run the suite without a false alarm, while any change to
a descriptor, a message, a service or the .pyi stubs still fails. If a different grpcio-tools also
changes the code templates, the comparison fails and the message names both versions. The
``_pb2_grpc.pyi`` stubs come from mypy-protobuf, which stamps no version, so they are compared
whole; its pin must be the same in tox.ini and pyproject.toml (checked here too). Whether
the stamped versions can run is checked separately: every module must import cleanly with
warnings as errors (protobuf warns when gencode and runtime majors differ, and the grpc stubs raise
when grpcio is older than the generator).
"""

from __future__ import annotations

import configparser
import difflib
import importlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
API_DIR = REPO / "stigmer" / "api"
GENERATOR = REPO / "tools" / "gen_protos.py"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
FIX = "Run `tox -e proto` to regenerate stigmer/api from the .proto files, and commit the result."
SUBPROCESS_TIMEOUT_S = 120.0

# The API surface other modules rely on: module -> service -> rpc -> server-streaming?
EXPECTED_SERVICES: dict[str, dict[str, dict[str, bool]]] = {
    "common": {},
    "agent_execution": {
        "AgentExecutionService": {
            "Create": False,
            "Get": False,
            "List": False,
            "Watch": True,
            "Cancel": False,
            "Delete": False,
        },
    },
    "workflow": {
        "WorkflowService": {"Create": False, "Validate": False, "Get": False, "List": False, "Delete": False},
    },
    "workflow_execution": {
        "WorkflowExecutionService": {
            "Create": False,
            "Get": False,
            "List": False,
            "Watch": True,
            "Cancel": False,
            "Delete": False,
        },
    },
    "status": {"StatusService": {"GetStatus": False}},
}

# (pattern, replacement) pairs that blank out version stamps and nothing else.
_STAMPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^# Protobuf Python Version: \S+$", re.MULTILINE), "# Protobuf Python Version: <v>"),
    (
        re.compile(
            r"(_runtime_version\.ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)"
            r"\s*\d+,\s*\d+,\s*\d+,\s*'[^']*',"
        ),
        r"\1 <v>,",
    ),
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.MULTILINE), "GRPC_GENERATED_VERSION = '<v>'"),
)


def normalize(text: str) -> str:
    for pattern, replacement in _STAMPS:
        text = pattern.sub(replacement, text)
    return text


def generator_versions(directory: Path) -> str:
    """'protobuf X, grpcio-tools Y' as stamped in the stubs of ``directory``."""
    found: list[str] = []
    for pattern, label in (
        (r"^# Protobuf Python Version: (\S+)$", "protobuf gencode"),
        (r"^GRPC_GENERATED_VERSION = '([^']*)'$", "grpcio-tools"),
    ):
        versions = {
            m.group(1)
            for f in sorted(directory.glob("*_pb2*.py"))
            for m in re.finditer(pattern, f.read_text(encoding="utf-8"), re.MULTILINE)
        }
        found.append(f"{label} {'/'.join(sorted(versions)) or '?'}")
    return ", ".join(found)


def installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tox_pins() -> dict[str, str]:
    """tox.ini's [pins] section: name -> requirement (e.g. 'grpcio_tools' -> 'grpcio-tools==1.85.1')."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "tox.ini", encoding="utf-8")
    return dict(parser["pins"])


def generated_names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


@pytest.fixture(scope="module")
def fresh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fresh_stubs")
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, (
        f"tools/gen_protos.py failed (exit {proc.returncode}); it needs grpcio-tools and mypy-protobuf "
        f"(`pip install -e .[test]`, or run the suite through tox).\n{proc.stdout}{proc.stderr}"
    )
    return out


def test_no_missing_or_stale_stub_files(fresh_dir: Path) -> None:
    committed, fresh = generated_names(API_DIR), generated_names(fresh_dir)
    missing, stale = sorted(fresh - committed), sorted(committed - fresh)
    assert not missing and not stale, f"stigmer/api is out of date: missing {missing}, stale (no .proto) {stale}. {FIX}"


def test_committed_stubs_match_protos(fresh_dir: Path) -> None:
    diffs: list[str] = []
    differing: list[str] = []
    for name in sorted(generated_names(fresh_dir) & generated_names(API_DIR)):
        want = normalize((fresh_dir / name).read_text(encoding="utf-8"))
        have = normalize((API_DIR / name).read_text(encoding="utf-8"))
        if want != have:
            differing.append(name)
            diff = difflib.unified_diff(
                have.splitlines(),
                want.splitlines(),
                f"committed/{name}",
                f"regenerated/{name}",
                n=1,
                lineterm="",
            )
            diffs.append("\n".join(list(diff)[:30]))
    if not diffs:
        return
    committed_v, fresh_v = generator_versions(API_DIR), generator_versions(fresh_dir)
    hint = (
        f"\nThe generators differ (committed: {committed_v}; this run: {fresh_v}): if the .proto "
        "files did not change, run the suite through tox, which pins grpcio-tools, or bump that "
        "pin in tox.ini and regenerate."
        if committed_v != fresh_v
        else ""
    )
    pinned, installed = tox_pins()["mypy_protobuf"], installed_version("mypy-protobuf")
    if any(name.endswith("_pb2_grpc.pyi") for name in differing) and pinned != f"mypy-protobuf=={installed}":
        hint += (
            f"\nThe *_pb2_grpc.pyi stubs come from mypy-protobuf (this run: {installed}; tox.ini pins {pinned}): "
            "if the .proto files did not change, install the pinned version or run the suite through tox."
        )
    pytest.fail(f"Generated stubs differ from the .proto sources. {FIX}{hint}\n\n" + "\n\n".join(diffs))


def test_regeneration_is_deterministic(fresh_dir: Path, tmp_path: Path) -> None:
    # A second run must give the same bytes, stamps included, or the freshness check is noise.
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert generated_names(tmp_path) == generated_names(fresh_dir)
    for name in sorted(generated_names(fresh_dir)):
        assert (tmp_path / name).read_bytes() == (fresh_dir / name).read_bytes(), name


def test_normalize_masks_only_version_stamps() -> None:
    pb2 = (API_DIR / "agent_execution_pb2.py").read_text(encoding="utf-8")
    grpc_stub = (API_DIR / "agent_execution_pb2_grpc.py").read_text(encoding="utf-8")
    restamped_pb2 = re.sub(r"(?m)^# Protobuf Python Version: \S+$", "# Protobuf Python Version: 99.1.2", pb2)
    restamped_pb2 = re.sub(r"(Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,", r"\1\n    99,\n    1,\n    2,", restamped_pb2)
    restamped_grpc = re.sub(r"(?m)^GRPC_GENERATED_VERSION = '[^']*'$", "GRPC_GENERATED_VERSION = '9.9.9'", grpc_stub)
    # The stamps really are there (else this test proves nothing) and are the only thing masked.
    assert restamped_pb2 != pb2 and restamped_grpc != grpc_stub
    assert normalize(restamped_pb2) == normalize(pb2)
    assert normalize(restamped_grpc) == normalize(grpc_stub)
    # A real change (here: a renamed field inside the serialized descriptor) still shows.
    assert "runtime_env" in pb2
    assert normalize(pb2.replace("runtime_env", "runtime_enx")) != normalize(pb2)
    assert normalize(grpc_stub.replace("/Watch'", "/Follow'")) != normalize(grpc_stub)


def test_stubs_import_cleanly_with_warnings_as_errors() -> None:
    # A fresh interpreter, so that modules imported earlier in the session cannot hide a warning.
    modules = [f"stigmer.api.{m}{suffix}" for m in EXPECTED_SERVICES for suffix in ("_pb2", "_pb2_grpc")]
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)",
            *modules,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"importing the stubs failed or warned:\n{proc.stderr}\n{FIX}"


def test_generator_pins_match_the_test_extra() -> None:
    # CI installs `.[test]` and tox installs [pins]; both must run the same generators, or the
    # freshness check passes in one and fails in the other.
    with (REPO / "pyproject.toml").open("rb") as f:
        test_extra = set(tomllib.load(f)["project"]["optional-dependencies"]["test"])
    pins = tox_pins()
    assert set(pins) == {"grpcio_tools", "mypy_protobuf"}
    for requirement in pins.values():
        assert "==" in requirement and requirement in test_extra, f"{requirement} (tox.ini [pins]) not in .[test]"


def test_mypy_override_lists_every_pb2_module() -> None:
    # pyproject.toml lets protoc's *_pb2.pyi spell `Mapping` bare; it has to name each module.
    with (REPO / "pyproject.toml").open("rb") as f:
        overrides = tomllib.load(f)["tool"]["mypy"]["overrides"]
    relaxed = {m for o in overrides if o.get("disallow_any_generics") is False for m in o["module"]}
    assert relaxed == {f"stigmer.api.{p.stem}_pb2" for p in API_DIR.glob("*.proto")}


def test_every_proto_has_stubs_and_is_expected() -> None:
    protos = {p.stem for p in API_DIR.glob("*.proto")}
    assert protos == set(EXPECTED_SERVICES), "update EXPECTED_SERVICES when adding or removing a .proto"


@pytest.mark.parametrize("module", sorted(EXPECTED_SERVICES))
def test_services_exist(module: str) -> None:
    pb2 = importlib.import_module(f"stigmer.api.{module}_pb2")
    pb2_grpc = importlib.import_module(f"stigmer.api.{module}_pb2_grpc")
    assert pb2.DESCRIPTOR.package == "stigmer.v1"
    assert pb2.DESCRIPTOR.name == f"stigmer/api/{module}.proto"
    services = {
        name: {m.name: m.server_streaming for m in svc.methods} for name, svc in pb2.DESCRIPTOR.services_by_name.items()
    }
    assert services == EXPECTED_SERVICES[module]
    for name, methods in services.items():
        servicer_cls = getattr(pb2_grpc, f"{name}Servicer")
        assert callable(getattr(pb2_grpc, f"add_{name}Servicer_to_server"))
        for method in methods:
            assert callable(getattr(servicer_cls, method)), f"{name}Servicer.{method}"
    # Building a stub does not dial (channels connect lazily), so no server is needed.
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        for name, methods in services.items():
            stub = getattr(pb2_grpc, f"{name}Stub")(channel)
            for method in methods:
                assert callable(getattr(stub, method)), f"{name}Stub.{method}"
