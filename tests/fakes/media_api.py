"""A wire-level fake of Jan's media-api ``POST /v1/media/resolve`` (janhq/server at 5832d267) for tests.

Real HTTP on loopback, the request and answer bodies, status codes and error bodies of media-api as it
was at that commit (the last one with ``/v1/media/resolve``: ``domain/media/service.go``,
``handlers/media_handler.go``, ``responses/error_responses.go``, ``utils/platformerrors``,
``repository/media/repository.go``, ``auth/validator.go``), and a stand-in for the object store the
presigned URLs point at, so the code under test needs no patching::

    media = FakeMediaApi()
    base = await media.start()                # http://127.0.0.1:<port>
    image = media.add()                       # jan_01hq... (a tiny PNG behind it)
    media.fail(500)                           # the next resolve answers media-api's generic 500
    media.delay(3)                            # the one after waits 3 s first
    ...                                       # POST {base}/v1/media/resolve
    assert media.requests[-1]["headers"]["authorization"] == "Bearer ..."
    await media.stop()

What is served:

* ``POST /v1/media/resolve`` ``{"payload": <any JSON>}`` with ``Authorization: Bearer <token>``: 200
  ``{"payload": <the payload, placeholders replaced>}``.
* ``GET /media/{id}?X-Amz-Signature=...&X-Amz-Expires=...``: the object store behind the presigned URLs,
  200 with the media's bytes (a 1x1 PNG unless ``add`` was given others).
* ``GET /healthz``: 200 ``{"status": "healthy"}`` (no authentication, as in media-api).

Faithful to media-api at 5832d267:

* The payload is rewritten as text, the raw JSON of ``payload`` as the request sent it: every match of
  ``data:(image/[a-z0-9.+-]+);(?:base64,)?(jan_[A-Za-z0-9]+)`` (whether in a string or a key, whatever
  JSON it is in) becomes the presigned URL of that id; the ``image/...`` type is ignored. A payload
  without a match comes back as it was. Ids are looked up in order and the first unknown one fails the
  whole call. The answer is gin's ``c.JSON``: compact (whitespace of the payload dropped, numbers and
  escapes left as sent) with ``<``, ``>`` and ``&`` escaped as ``\\u003c``, ``\\u003e``, ``\\u0026``: so
  the ``&`` of a presigned URL arrives as ``\\u0026`` inside its JSON string (any JSON parser reads it
  back), content type ``application/json; charset=utf-8``.
* An unknown id is a 404 with the platform-error body of the repository's not-found error,
  ``{"code": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "error": "media object not found", "message": "media
  object not found"}`` (NOT_FOUND maps to 404 in ``platformerrors.ErrorTypeToHTTPStatus``). This was
  checked against the code, because the brief of this fake expected otherwise: ``ResolvePayload`` has an
  ``obj == nil`` branch returning a plain ``fmt`` error ("unknown media id ...", which ``HandleError``
  would turn into the generic 500), but at 5832d267 that branch is dead: ``Repository.GetByID`` never
  answers (nil, nil), it turns ``gorm.ErrRecordNotFound`` into that NOT_FOUND ``PlatformError``, which
  ``ResolvePayload`` returns as is and ``HandleError`` answers 404. So the fake follows the code: 404,
  and the body names no id (the message is the repository's, the same for every id). There is no
  request id: nothing in media-api puts one where ``platformerrors`` looks for it, so ``request_id`` is
  always left out.
* A body gin cannot bind is a 400 ``{"code": "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e", "error": "invalid
  request body", "message": "invalid request body"}``: not JSON (or empty, or NaN), not an object, or an
  object without ``payload`` (``binding:"required"``). ``"payload": null`` is a payload (a
  ``json.RawMessage`` holding ``null``, answered ``{"payload":null}``). As with Go, field names match
  case-insensitively, the last of repeated fields wins, and what follows the first JSON value is ignored.
* Authentication as media-api's validator does it (``AUTH_ENABLED=true``, how the compose file runs it):
  no ``Authorization: Bearer <token>`` (scheme case-insensitive, token trimmed) is 401 ``{"error":
  "missing bearer token"}``; a token that does not validate is 401 ``{"error": "invalid token"}``. The
  check runs before the body is read, and also guards unknown paths (gin runs global middleware on its
  404s), which are then gin's text/plain ``404 page not found``; gin has no 405, so another method on the
  resolve path is that 404 too. Kong, in front of media-api on the default ``MEDIA_RESOLVE_URL``, does not
  change this: its ``jwt`` plugin on the media route has an anonymous consumer, so a request without a
  token reaches media-api, which refuses it as above. llm-api's ``Authorization`` and ``X-Principal-Id``
  are recorded, not interpreted (media-api reads neither for resolve beyond the token check).

Where the fake is simpler:

* Any non-empty bearer token is valid unless ``token`` is set (then only that one is): no JWKS, issuer or
  audience check. Media belongs to nobody: media-api at 5832d267 does not check ownership either.
* The presigned URL is ``http://127.0.0.1:<port>/media/<id>?X-Amz-Signature=<64 hex>&X-Amz-Expires=<ttl>``
  (``presign_ttl``, 300 s by default; media-api's default is 168 h), not S3's full SigV4 query on
  ``/<bucket>/images/<id>.<ext>``. All placeholders of one id in one call get the same URL, as S3's
  presigning (deterministic within a second) gives them; each call signs anew. ``GET /media/<id>`` wants
  a signature issued for that id and not expired, else S3's 403 XML (``AccessDenied``, or
  ``SignatureDoesNotMatch`` for a signature it did not issue for that id); it needs no ``Authorization``.
* Only resolve, healthz and the object store are served (no ingest, upload, presign or proxy routes).
* Faults are queued: each resolve call that passes authentication and body validation takes the oldest
  entry. ``fail`` answers a status, with media-api's own body for it unless one is given (500: the
  generic ``{"code": "", "error": "failed to resolve media payload", "message": "failed to resolve media
  payload"}`` of a non-platform error; 400, 401 and 404 as above; 502/504: Kong's upstream errors; 429:
  Kong's rate limit); ``delay`` waits, then answers normally. Authentication and validation errors do not
  consume the queue.
* Request headers are recorded with lower-cased names.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import listen, recorded

PLACEHOLDER = re.compile(r"data:(image/[a-z0-9.+-]+);(?:base64,)?(jan_[A-Za-z0-9]+)")
GENERIC_ERROR = {"code": "", "error": "failed to resolve media payload", "message": "failed to resolve media payload"}
INVALID_BODY = {
    "code": "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e",
    "error": "invalid request body",
    "message": "invalid request body",
}
NOT_FOUND = {
    "code": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    "error": "media object not found",
    "message": "media object not found",
}
MISSING_TOKEN = {"error": "missing bearer token"}
INVALID_TOKEN = {"error": "invalid token"}
KONG_BODIES = {
    429: {"message": "API rate limit exceeded"},
    502: {"message": "An invalid response was received from the upstream server"},
    504: {"message": "The upstream server is timing out"},
}
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # ULID's alphabet, lower-cased as mediaid.New() writes it
_WHITESPACE = " \t\r\n"


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")  # filter byte + one transparent pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


TINY_PNG = _png_1x1()


def new_media_id() -> str:
    """A media id as media-api makes them: ``jan_`` and a lower-cased ULID (26 characters)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "jan_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# -- gin's view of the body ---------------------------------------------------------------------------------------


class _Unbindable(Exception):
    """What ``c.ShouldBindJSON(&resolveRequest{})`` refuses."""


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def payload_text(raw: bytes) -> str:
    """The raw JSON text of ``payload`` (a ``json.RawMessage``) as Go would bind it; raise _Unbindable."""
    text = raw.decode("utf-8", "surrogateescape")

    def no_constants(name: str) -> Any:
        raise _Unbindable(f"invalid character {name[0]!r}")

    decoder = json.JSONDecoder(parse_constant=no_constants)
    index = _skip(text, 0)
    if index == len(text):
        raise _Unbindable("EOF")
    try:
        if text[index] != "{":
            value, _ = decoder.raw_decode(text, index)
            # null leaves the struct empty (then "required" fails); anything else cannot fill a struct
            raise _Unbindable("payload is required" if value is None else "cannot unmarshal into a struct")
        payload = None
        index = _skip(text, index + 1)
        if index < len(text) and text[index] == "}":
            index += 1
        else:
            while True:
                if index >= len(text) or text[index] != '"':
                    raise _Unbindable("invalid character looking for beginning of object key string")
                key, index = decoder.raw_decode(text, index)
                index = _skip(text, index)
                if index >= len(text) or text[index] != ":":
                    raise _Unbindable("invalid character after object key")
                start = _skip(text, index + 1)
                _, index = decoder.raw_decode(text, start)
                if key.casefold() == "payload":
                    payload = text[start:index]
                index = _skip(text, index)
                if index < len(text) and text[index] == ",":
                    index = _skip(text, index + 1)
                    continue
                if index < len(text) and text[index] == "}":
                    break
                raise _Unbindable("invalid character after object key:value pair")
    except ValueError as error:
        raise _Unbindable(str(error)) from None
    if payload is None:
        raise _Unbindable("Key: 'resolveRequest.Payload' Error:Field validation for 'Payload' failed on the 'required' tag")
    return payload


def go_compact(text: str) -> str:
    """Go's ``json.Compact`` with HTML escaping, as ``json.Marshal`` applies it to a ``json.RawMessage``."""
    out = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char in _WHITESPACE:
            continue
        elif char == '"':
            in_string = True
        out.append({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}.get(char, char))
    return "".join(out)


def gin_json(body: Any) -> bytes:
    """``c.JSON``: ``json.Marshal``, compact, HTML characters escaped, no final newline."""
    return go_compact(json.dumps(body, ensure_ascii=False, separators=(",", ":"))).encode()


# -- queued behaviours ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fail:
    status: int
    body: Any  # dict | list | str | bytes | None (None: media-api's own body for that status)
    headers: Mapping[str, str] | None


@dataclass(frozen=True)
class _Delay:
    seconds: float


@dataclass(frozen=True)
class _Media:
    content: bytes
    mime_type: str


class FakeMediaApi:
    """media-api's resolve endpoint (and an object store) on loopback; see the module docstring."""

    def __init__(self, *, token: str | None = None, presign_ttl: int = 300) -> None:
        """``token``: the only bearer token accepted (any non-empty one when None). ``presign_ttl``: seconds
        a presigned URL is valid (``X-Amz-Expires``)."""
        self.token = token
        self.presign_ttl = presign_ttl
        self.base_url = ""
        # every request received: {"method", "path", "headers" (lower-cased names), "json" (parsed body or None)}
        self.requests: list[dict[str, Any]] = []
        self.media: dict[str, _Media] = {}  # registered media by id
        self._signatures: dict[str, tuple[str, float]] = {}  # signature -> (media id, monotonic expiry)
        self._queue: deque[_Fail | _Delay] = deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on a loopback port (a free one by default); return the base URL."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/media/resolve", self._resolve)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/media/{id}", self._download)
        # handler_cancellation: a client that gives up cancels its handler (and its delay) at once
        self._runner, self.base_url = await listen(app, port, handler_cancellation=True, shutdown_timeout=0.5)
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------------------------------------------

    def add(self, media_id: str | None = None, *, content: bytes = TINY_PNG, mime_type: str = "image/png") -> str:
        """Register a media object; return its id (a new ``jan_<ulid>`` unless ``media_id`` is given). Its
        presigned URL serves ``content`` as ``mime_type``."""
        media_id = media_id or new_media_id()
        if not re.fullmatch(r"jan_[A-Za-z0-9]+", media_id):
            raise ValueError(f"a media id the placeholder pattern can match is jan_ + letters/digits, not {media_id!r}")
        self.media[media_id] = _Media(content, mime_type)
        return media_id

    def fail(self, status: int, body: Any = None, *, headers: Mapping[str, str] | None = None) -> None:
        """The next resolve answers ``status`` with ``body`` (a dict or list is sent as JSON, a str as
        text/plain, bytes as they are); without one, media-api's (or Kong's) own body for that status."""
        self._queue.append(_Fail(status, body, dict(headers) if headers is not None else None))

    def delay(self, seconds: float) -> None:
        """The next resolve waits ``seconds``, then answers normally."""
        self._queue.append(_Delay(seconds))

    @property
    def pending(self) -> int:
        """How many queued faults are still waiting for a resolve call."""
        return len(self._queue)

    def presign(self, media_id: str) -> str:
        """A fresh presigned URL for a registered id (what a resolve puts in place of its placeholders)."""
        signature = secrets.token_hex(32)
        self._signatures[signature] = (media_id, time.monotonic() + self.presign_ttl)
        return f"{self.base_url}/media/{media_id}?X-Amz-Signature={signature}&X-Amz-Expires={self.presign_ttl}"

    # -- HTTP plumbing ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(await recorded(request))

        public = request.path == "/healthz" or request.path.startswith("/media/")
        if not public:
            denied = self._check_token(request.headers.get("Authorization", ""))
            if denied is not None:
                return denied
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status not in (404, 405):
                raise
            return web.Response(status=404, body=b"404 page not found", headers={"Content-Type": "text/plain"})

    def _check_token(self, header: str) -> web.Response | None:
        """auth.Validator.Middleware: a bearer token (any scheme case), else 401."""
        scheme, space, token = header.partition(" ")
        token = token.strip(_WHITESPACE + "\v\f")
        if not space or scheme.lower() != "bearer" or not token:
            return _json(401, MISSING_TOKEN)
        if self.token is not None and token != self.token:
            return _json(401, INVALID_TOKEN)
        return None

    def _fail_response(self, fault: _Fail) -> web.Response:
        headers = dict(fault.headers or {})
        body = fault.body
        if body is None:
            body = {400: INVALID_BODY, 401: INVALID_TOKEN, 404: NOT_FOUND}.get(fault.status)
            if body is None and fault.status in KONG_BODIES:
                body = KONG_BODIES[fault.status]
                if fault.status == 429 and fault.headers is None:
                    headers["Retry-After"] = "1"
            if body is None:
                body = GENERIC_ERROR
        if isinstance(body, bytes):
            return web.Response(status=fault.status, body=body, headers=headers)
        if isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return web.Response(status=fault.status, body=body.encode(), headers=headers)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return web.Response(status=fault.status, body=gin_json(body), headers=headers)

    # -- endpoints -------------------------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "healthy"})

    async def _resolve(self, request: web.Request) -> web.Response:
        try:
            payload = payload_text(await request.read())
        except _Unbindable:
            return _json(400, INVALID_BODY)
        if self._queue:
            fault = self._queue.popleft()
            if isinstance(fault, _Fail):
                return self._fail_response(fault)
            await asyncio.sleep(fault.seconds)

        urls: dict[str, str] = {}
        for match in PLACEHOLDER.finditer(payload):
            media_id = match.group(2)
            if media_id not in self.media:
                return _json(404, NOT_FOUND)
            if media_id not in urls:
                urls[media_id] = self.presign(media_id)
        resolved = PLACEHOLDER.sub(lambda match: urls[match.group(2)], payload)
        body = b'{"payload":' + go_compact(resolved).encode("utf-8", "surrogateescape") + b"}"
        return web.Response(status=200, body=body, headers={"Content-Type": "application/json; charset=utf-8"})

    async def _download(self, request: web.Request) -> web.Response:
        media_id = request.match_info["id"]
        signature = request.query.get("X-Amz-Signature")
        if not signature:
            return _s3_error("AccessDenied", "Access Denied")
        issued = self._signatures.get(signature)
        if issued is None or issued[0] != media_id:
            return _s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the "
                "signature you provided. Check your key and signing method.",
            )
        if time.monotonic() > issued[1]:
            return _s3_error("AccessDenied", "Request has expired")
        media = self.media.get(media_id)
        if media is None:
            return _s3_error("NoSuchKey", "The specified key does not exist.", status=404)
        return web.Response(status=200, body=media.content, headers={"Content-Type": media.mime_type})


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=gin_json(body), headers={"Content-Type": "application/json; charset=utf-8"})


def _s3_error(code: str, message: str, *, status: int = 403) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), headers={"Content-Type": "application/xml"})
