"""The `stigmer` console script: environment first, then the CLI."""

import os


def main() -> None:
    # gRPC's C core prints raw lines (e.g. TLS handshake failures) unless told otherwise, and it
    # reads this when grpc is first imported -- hence before importing the CLI. Our own messages
    # say what went wrong in words.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from stigmer.cli import main as cli_main

    cli_main()
