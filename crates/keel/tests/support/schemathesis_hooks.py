"""How schemathesis writes request bodies of media types it has no serializer for: a session
file (`application/x-ndjson`, POST /v1/sessions/import) is sent as the text it generated."""

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode("utf-8")
