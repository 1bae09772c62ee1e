"""Schemathesis hooks for scripts/fuzz-api: a tus chunk (`PATCH /api/v1/uploads/{id}`) is sent as raw
bytes, as `application/octet-stream` is."""

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
