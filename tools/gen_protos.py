#!/usr/bin/env python3
"""Regenerate the protobuf/gRPC stubs of stigmer/api from the .proto files there.

    python3 tools/gen_protos.py [--out DIR]

DIR defaults to the repository's stigmer/api. For every ``stigmer/api/<name>.proto`` it writes
``<name>_pb2.py``, ``<name>_pb2.pyi``, ``<name>_pb2_grpc.py`` and ``<name>_pb2_grpc.pyi`` into
DIR, exactly as protoc and its plugins emit them, and deletes generated files in DIR whose .proto
is gone. The ``_pb2_grpc.pyi`` type stubs come from mypy-protobuf's ``protoc-gen-mypy_grpc``
plugin (grpcio-tools writes the ``_pb2_grpc.py`` modules without annotations).

Deterministic: protoc always runs from the repository root with ``-I .`` on the same sorted,
relative file list, so the descriptors embed ``stigmer/api/<name>.proto`` (not a machine path)
and the stubs import each other as ``from stigmer.api import <name>_pb2``, wherever the output
goes. Only the generator's version stamps change with the grpcio-tools version; `tox -e proto`
pins it, and mypy-protobuf too, whose output carries no version stamp.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
API_REL = Path("stigmer") / "api"
# What protoc emits per .proto with the four --*_out options below.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
# mypy-protobuf's console script that writes the _pb2_grpc.pyi stubs.
MYPY_GRPC_PLUGIN = "protoc-gen-mypy_grpc"
PROTOC_TIMEOUT_S = 120.0


class GenerationError(RuntimeError):
    """protoc failed; the message carries its stderr."""


def proto_sources(*, repo: Path = REPO) -> list[Path]:
    """The .proto files to compile, relative to ``repo``, sorted so the run is reproducible."""
    return sorted(p.relative_to(repo) for p in (repo / API_REL).glob("*.proto"))


def is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def _well_known_include() -> str:
    # google/protobuf/*.proto (timestamp.proto) ship inside grpcio-tools; `python -m
    # grpc_tools.protoc` would add this too, but being explicit keeps the command self-evident.
    return str(resources.files("grpc_tools") / "_proto")


def _mypy_grpc_plugin() -> str:
    # Look next to this interpreter first (a venv or tox env need not be on PATH), then on PATH,
    # and hand protoc the full path, so the plugin that runs is the one installed with this Python.
    search = os.pathsep.join(p for p in (sysconfig.get_path("scripts"), os.environ.get("PATH", "")) if p)
    found = shutil.which(MYPY_GRPC_PLUGIN, path=search)
    if found is None:
        raise GenerationError(
            f"{MYPY_GRPC_PLUGIN} not found: install mypy-protobuf at the version tox.ini [pins] gives "
            "(`pip install -e .[test]`, or run `tox -e proto`)"
        )
    return found


def run_protoc(*, sources: list[Path], dest: Path, repo: Path = REPO) -> None:
    """Compile ``sources`` (relative to ``repo``) into ``dest``, which mirrors the package path."""
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        "-I",
        _well_known_include(),
        f"--python_out={dest}",
        f"--pyi_out={dest}",
        f"--grpc_python_out={dest}",
        f"--plugin={MYPY_GRPC_PLUGIN}={_mypy_grpc_plugin()}",
        f"--mypy_grpc_out={dest}",
        *(str(s) for s in sources),
    ]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=PROTOC_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise GenerationError(f"protoc failed (exit {proc.returncode}):\n{proc.stderr.strip()}")


def generate(*, out_dir: Path, repo: Path = REPO) -> list[Path]:
    """Regenerate every stub into ``out_dir``; return the generated files, sorted.

    Files whose bytes are unchanged are not rewritten (mtimes stay put, so editors and
    build caches see no spurious change).
    """
    sources = proto_sources(repo=repo)
    if not sources:
        raise GenerationError(f"no .proto files under {repo / API_REL}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # protoc writes <dest>/stigmer/api/...; compile into a scratch dir and copy flat, so --out
    # can be any directory (tests use a tmp_path) without changing what protoc sees.
    with tempfile.TemporaryDirectory(prefix="stigmer-protoc-") as scratch:
        run_protoc(sources=sources, dest=Path(scratch), repo=repo)
        produced = sorted(p for p in (Path(scratch) / API_REL).iterdir() if is_generated(p))
        names = {p.name for p in produced}
        for old in sorted(out_dir.iterdir()):
            if is_generated(old) and old.name not in names:
                old.unlink()  # its .proto was removed or renamed
        written: list[Path] = []
        for src in produced:
            target = out_dir / src.name
            data = src.read_bytes()
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / API_REL,
        help="directory to write the stubs into (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        files = generate(out_dir=args.out)
    except (GenerationError, subprocess.TimeoutExpired) as exc:
        print(f"gen_protos: {exc}", file=sys.stderr)
        return 1
    print(f"gen_protos: {len(files)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
