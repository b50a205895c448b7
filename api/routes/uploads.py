"""What the upload routes share: the request body streamed to a scratch file, refused when empty."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from api.errors import invalid

BINARY_BODY = {"schema": {"type": "string", "format": "binary"}}


async def receive_body(request: Request, upload: Path, what: str) -> Path:
    """Write the request body to `upload` chunk by chunk; returns it.

    Raises:
        ApiError: 422 naming ``body`` when the body is empty (the message names `what` to send).
    """
    with upload.open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    if upload.stat().st_size == 0:
        raise invalid("body", f"the body is empty: send {what} as the request body")
    return upload
