"""An ASGI middleware that answers 413 to request bodies over a size limit (declared or streamed)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(BaseException):
    """The streamed body passed the limit.

    A `BaseException` on purpose: FastAPI turns any `Exception` raised while it reads a body into
    400 "There was an error parsing the body", so a chunked body over the limit came back as that
    400 instead of reaching this middleware's 413.
    """


class BodySizeLimit:
    """Reject bodies over `max_bytes` with 413 ``{code, message, field}``.

    A ``Content-Length`` over the limit is refused before reading; a chunked body is counted as it
    arrives and refused when it passes the limit. `larger` gives exact paths a limit of their own
    (a dataset upload is far larger than any JSON body).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.larger = app, max_bytes, larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, refusing its body when it is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await self._reject(send, limit)

    async def _reject(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {"code": "payload_too_large", "message": f"request body over {limit} bytes", "field": None}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
