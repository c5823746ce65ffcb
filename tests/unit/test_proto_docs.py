"""Every service, rpc, message, field, enum and enum value in stigmer/api/*.proto has a comment.

The .proto comments are the API reference (they also become the docstrings of the generated
stubs), so an undocumented element is a gap in the docs. protoc reports comments per element in
the descriptor's source info; this test asks it for them and lists whatever has none.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
API_REL = Path("stigmer") / "api"
TIMEOUT_S = 120.0

# Field numbers in descriptor.proto that make up a SourceCodeInfo path.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MSG_FIELD, MSG_NESTED, MSG_ENUM = 2, 3, 4
ENUM_VALUE = 2
SERVICE_METHOD = 2

Path_ = tuple[int, ...]


def _enum(enum: descriptor_pb2.EnumDescriptorProto, path: Path_, scope: str) -> Iterator[tuple[Path_, str]]:
    name = f"{scope}{enum.name}"
    yield path, f"enum {name}"
    for i, value in enumerate(enum.value):
        yield (*path, ENUM_VALUE, i), f"value {name}.{value.name}"


def _message(msg: descriptor_pb2.DescriptorProto, path: Path_, scope: str) -> Iterator[tuple[Path_, str]]:
    name = f"{scope}{msg.name}"
    yield path, f"message {name}"
    for i, field in enumerate(msg.field):
        yield (*path, MSG_FIELD, i), f"field {name}.{field.name}"
    for i, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:  # map<k, v> fields synthesize these; nothing to document
            yield from _message(nested, (*path, MSG_NESTED, i), f"{name}.")
    for i, enum in enumerate(msg.enum_type):
        yield from _enum(enum, (*path, MSG_ENUM, i), f"{name}.")


def documentable(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[Path_, str]]:
    """(source path, human name) of every element that should carry a comment."""
    for i, msg in enumerate(file.message_type):
        yield from _message(msg, (FILE_MESSAGE, i), "")
    for i, enum in enumerate(file.enum_type):
        yield from _enum(enum, (FILE_ENUM, i), "")
    for i, svc in enumerate(file.service):
        yield (FILE_SERVICE, i), f"service {svc.name}"
        for j, method in enumerate(svc.method):
            yield (FILE_SERVICE, i, SERVICE_METHOD, j), f"rpc {svc.name}.{method.name}"


def compile_with_source_info(*, sources: Sequence[Path], out: Path) -> descriptor_pb2.FileDescriptorSet:
    include = resources.files("grpc_tools") / "_proto"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "-I",
            str(include),
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *map(str, sources),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_every_api_element_is_commented(tmp_path: Path) -> None:
    sources = sorted(p.relative_to(REPO) for p in (REPO / API_REL).glob("*.proto"))
    assert sources, "no .proto files found"
    fds = compile_with_source_info(sources=sources, out=tmp_path / "api.pb")
    undocumented: list[str] = []
    checked = 0
    for file in fds.file:
        comments = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
        for path, name in documentable(file):
            checked += 1
            if not comments.get(path):
                undocumented.append(f"{file.name}: {name}")
    assert checked > 100, f"walked only {checked} elements; is the descriptor walk broken?"
    assert not undocumented, "add a leading // comment to:\n" + "\n".join(undocumented)
