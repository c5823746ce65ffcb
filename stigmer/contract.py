"""Strings shared by the server and its clients (the log and CLI contract); no heavy imports, so
that the CLI starts fast."""

from stigmer.errors import UNAVAILABLE_MESSAGE as UNAVAILABLE_MESSAGE

#: Trailing metadata on UNAVAILABLE: the connection state, and whole seconds before a retry is worth it.
STATE_KEY = "stigmer-connection-state"
RETRY_AFTER_KEY = "retry-after"
#: Trailing metadata on an UNAVAILABLE the server sent because its database did not answer.
UNAVAILABLE_KIND_KEY = "stigmer-unavailable"
DATABASE_UNAVAILABLE = "database"
