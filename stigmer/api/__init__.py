"""The stigmer gRPC API (package ``stigmer.v1``): ``.proto`` sources and their generated stubs.

The ``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py`` and ``*_pb2_grpc.pyi`` files are protoc output
(the last from mypy-protobuf's plugin): never edit them by hand. Edit the ``.proto`` files (their
comments are the API reference), then run ``tox -e proto`` (or ``python3 tools/gen_protos.py``);
``tests/unit/test_protos_fresh.py`` fails when the committed stubs no longer match the sources.

Import the modules directly, for example ``from stigmer.api import agent_execution_pb2_grpc``.
Nothing is imported here, so importing one service does not load the others.
"""
