"""How much text one execution may carry: Temporal's payload limit, in the terms the API checks.

Pure (json only): the controllers check requests against it, the workflow document parser
bounds documents by it, and the workflows' payloads (stigmer.temporal.payloads) must fit it.
"""

from __future__ import annotations

import json

#: Temporal refuses a payload over 2 MiB (its default blob size limit; the SDK checks before sending
#: and the server again). Whatever the API accepts must fit, or its execution could never progress.
PAYLOAD_LIMIT_BYTES = 2 * 1024 * 1024
#: What one payload may spend on the caller's text; the rest is ids, field names and phases.
TEXT_BUDGET_BYTES = PAYLOAD_LIMIT_BYTES - 64 * 1024


def encoded_size(text: str) -> int:
    """Bytes ``text`` takes inside a payload. The SDK's JSON converter writes every non-ASCII or
    control character as a \\u escape (6 bytes; 12 outside the BMP), so text can grow up to six
    times on the way: 1 MiB of UTF-8 text may take up to 6 MiB there."""
    return len(json.dumps(text))  # ASCII by construction: characters are bytes
