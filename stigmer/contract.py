"""Strings shared by the server and its clients (the log and CLI contract); no heavy imports, so
that the CLI starts fast."""

#: The exact message of every UNAVAILABLE answer while Temporal is unreachable.
UNAVAILABLE_MESSAGE = "Temporal workflow engine is unavailable. Please try again later."
#: Trailing metadata on UNAVAILABLE: the connection state, and whole seconds before a retry is worth it.
STATE_KEY = "stigmer-connection-state"
RETRY_AFTER_KEY = "retry-after"
