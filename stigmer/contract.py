"""Strings shared by the server and its clients (the log and CLI contract); no heavy imports, so
that the CLI starts fast."""

from stigmer.errors import UNAVAILABLE_MESSAGE as UNAVAILABLE_MESSAGE

#: Trailing metadata on UNAVAILABLE: the connection state, and whole seconds before a retry is worth it.
STATE_KEY = "stigmer-connection-state"
RETRY_AFTER_KEY = "retry-after"
