"""What the studio refuses before any work starts: requests from elsewhere, bodies too large, numbers out of bounds.

- `Guard` (a plain ASGI middleware, the outermost layer) answers, in this order: 400 for a Host header that is not
  one of the allowed names (DNS rebinding; `[::1]:8000` is read as `::1`), 403 for a request that changes something
  without the studio pages' header (cross-site request forgery), 413 for a body over its route's bound (64 KiB for
  the JSON and form routes, `max_upload` for an image upload), counted as it arrives whether or not it says its
  length. At shutdown, a request the server cancels ends quietly (no asyncio.CancelledError traceback).
- `BOUNDS`: the range of every number a route takes; `query`, `form` and `field` declare a parameter with its bounds,
  `square_kernel` bounds the explainer's filter (a square of finite numbers within ±KERNEL_VALUE), and
  `validation_answer` turns FastAPI's 422 into one line in the studio's words: per field, its range, the message of
  the field's own validator (`invalid`), or the field's text given by the app; never pydantic's wording.
- `Refused` and its kinds: a refusal with its HTTP status (403, 413, 422, 429), one line each.

The bounds also bound the work a request starts (studio.work does not interrupt it): an upload at the 40-megapixel
bound is decoded and predicted in about 0.5 s (JPEG or PNG, on a 2-core AMD EPYC), the explainer at its largest
(64×64 input, 7×7 filter, stride 1, padding 7) in about 0.1 s. Grad-CAM and feature maps cost one forward (and
backward) pass of the run's network on one image at its input size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from typing import Any

from fastapi import Form, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_core import PydanticCustomError

from convscope.errors import ConvscopeError

log = logging.getLogger(__name__)

JSON_BODY = 64 * 1024  # bytes: the largest body of a route that takes JSON or a form (the explainer's is < 2 KiB)
UPLOAD_ROUTE = re.compile(r"/api/runs/[^/]+/predict")  # the one route that takes an image, bounded by max_upload
PAGE_HEADER = "x-convscope-studio"  # sent by the pages with every request that changes something

# name: (lowest, highest, what). Every number a route takes is declared with these bounds.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "size": (4, 64, "pixels"),  # the explainer's input side
    "window": (1, 7, "pixels"),  # a pool's window side
    "stride": (1, 7, "pixels"),
    "padding": (0, 7, "pixels, or valid or same"),
    "row": (0, 63, ""),  # the explainer's output position (clamped to the output's size)
    "column": (0, 63, ""),
    "top_k": (1, 100, "classes"),
    "min_score": (0.0, 1.0, ""),
    "epochs": (1, 1000, ""),
    "batch_size": (1, 4096, "images"),  # the Train page's training settings
    "lr": (1e-6, 10.0, ""),
    "per_class": (1, 100_000, "images"),
}
SPEC_CHARS = 32 * 1024  # the Train page's spec text: about 400 layers as NetSpec.to_yaml writes them (~80 each)
AUGMENT_CHARS = 100  # 'flip,translate=2,cutout=8' is 25
KERNEL_SIDE = 7  # the explainer's largest filter, k×k
KERNEL_VALUE = 1e6  # the largest magnitude of a filter value: outputs stay finite (49 × 255 × 1e6 ≪ 1e308)


class Refused(ConvscopeError):
    """A request the studio refuses, answered with `status` and this one-line message."""

    status = 400


class NotAllowed(Refused):
    status = 403


class TooLarge(Refused):
    status = 413


class OutOfBounds(Refused):
    status = 422


class TooMany(Refused):
    status = 429


def bounds_text(name: str) -> str:
    low, high, unit = BOUNDS[name]
    kind = "a number" if isinstance(low, float) or isinstance(high, float) else "an integer"
    return f"{name} must be {kind} from {low:g} to {high:g}{' ' + unit if unit else ''}"


def check(name: str, value: Any) -> Any:
    """`value` when it lies within BOUNDS[name]; raises OutOfBounds naming the field and its range."""
    low, high, _ = BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OutOfBounds(f"{bounds_text(name)}. Received: {str(value)[:40]!r}")
    return value


def field(name: str, default: Any):
    """A pydantic model's field within BOUNDS[name]."""
    low, high, _ = BOUNDS[name]
    return Field(default, ge=low, le=high)


def query(name: str):
    """For `Annotated[int, query(NAME)] = default`: a query parameter within BOUNDS[NAME]."""
    low, high, _ = BOUNDS[name]
    return Query(ge=low, le=high)


def form(name: str):
    """For `Annotated[int, form(NAME)] = default`: a form field within BOUNDS[NAME]."""
    low, high, _ = BOUNDS[name]
    return Form(ge=low, le=high)


def invalid(text: str) -> PydanticCustomError:
    """For a field validator: raise invalid(TEXT), and the 422 says TEXT, word for word (validation_answer)."""
    return PydanticCustomError("studio", "{text}", {"text": text})


def square_kernel(value: Any) -> list[list[float]]:
    """`value` as a k×k list of floats, 1 ≤ k ≤ KERNEL_SIDE, each finite and within ±KERNEL_VALUE. Raises
    OutOfBounds naming the kernel and what it must be (a ragged, non-numeric, NaN or huge filter)."""
    shape = f"kernel must be a square list of lists of numbers, 1×1 to {KERNEL_SIDE}×{KERNEL_SIDE}"
    if not isinstance(value, list | tuple) or not all(isinstance(row, list | tuple) for row in value):
        raise OutOfBounds(f"{shape}. Received: {str(value)[:40]!r}")
    lengths = [len(row) for row in value]
    if not 1 <= len(value) <= KERNEL_SIDE or any(n != len(value) for n in lengths):
        rows = ", ".join(map(str, lengths[: KERNEL_SIDE + 1])) + (", …" if len(lengths) > KERNEL_SIDE + 1 else "")
        raise OutOfBounds(
            f"{shape}. Received {len(value)} row(s) of lengths {rows}" if rows else f"{shape}. Received []"
        )
    for i, row in enumerate(value):
        for j, v in enumerate(row):
            where = f"row {i}, column {j}"
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise OutOfBounds(f"{shape}. Received {str(v)[:40]!r} at {where}")
            if not math.isfinite(v):
                raise OutOfBounds(f"kernel values must be finite numbers. Received {v} at {where}")
            if abs(v) > KERNEL_VALUE:
                raise OutOfBounds(f"kernel values must be numbers from {-KERNEL_VALUE:g} to {KERNEL_VALUE:g}. "
                                  f"Received {v:g} at {where}")  # fmt: skip
    return [[float(v) for v in row] for row in value]


def validation_answer(err: RequestValidationError, texts: dict[str, str] | None = None) -> JSONResponse:
    """FastAPI's validation errors as a 422 with one line: for each field (its first error), its range (BOUNDS), its
    validator's own message (`invalid`), or `texts[field]` (what the field must be), with what was received."""
    texts = texts or {}
    parts: dict[str, str] = {}
    for error in err.errors():
        loc = error.get("loc", ())
        name = str(loc[1]) if len(loc) > 1 and isinstance(loc[1], str) else ""
        if name not in parts:
            parts[name] = _error_text(name, error, texts)
    return JSONResponse({"detail": "; ".join(parts.values())[:500]}, status_code=422)


def _error_text(name: str, error: dict[str, Any], texts: dict[str, str]) -> str:
    kind, received = error.get("type", ""), str(error.get("input"))[:40]
    if kind == "studio":
        return str(error.get("msg", ""))
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({(error.get('ctx') or {}).get('error', 'unreadable')})"
    if not name:  # the body as a whole
        return "the request needs a body: a JSON object of the fields" if kind == "missing" else (
            "the request body must be a JSON object of the fields")  # fmt: skip
    what = bounds_text(name) if name in BOUNDS else texts.get(name, f"{name} is not valid")
    if kind == "missing":
        return f"{name} is missing: {what}"
    return f"{what}. Received: {received!r}"


def host_name(host: str) -> str:
    """The name in a Host header, without its port: 'localhost:8000' → 'localhost', '[::1]:8000' → '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The studio's outer ASGI layer: Host check (400), page header (403), body bounds (413); quiet cancellation."""

    def __init__(self, app, allowed_hosts, max_upload: int, json_body: int = JSON_BODY) -> None:
        self.app, self.max_upload, self.json_body = app, max_upload, json_body
        self.any_host = "*" in allowed_hosts
        self.hosts = {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not self.any_host and host_name(headers.get(b"host", b"").decode("latin-1")) not in self.hosts:
            await _answer(send, 400, "Invalid host header")
            return
        if scope["method"] not in ("GET", "HEAD") and headers.get(PAGE_HEADER.encode()) != b"1":
            detail = f"requests that change something must come from the studio's pages (header {PAGE_HEADER}: 1)"
            await _answer(send, 403, detail)
            return
        started = False

        async def sending(message):
            nonlocal started
            started = True
            await send(message)

        try:
            if scope["method"] in ("GET", "HEAD", "OPTIONS"):
                await self.app(scope, receive, sending)
            else:
                upload = UPLOAD_ROUTE.fullmatch(scope["path"]) is not None
                await self._bounded(scope, receive, sending, *((self.max_upload, "upload") if upload else
                                                               (self.json_body, "request body")))  # fmt: skip
        except asyncio.CancelledError:  # the server stops (Ctrl-C) with this request in flight: answered 503
            log.debug("%s %s cancelled at shutdown", scope["method"], scope["path"])
            if not started:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await _answer(send, 503, "the studio is stopping")

    async def _bounded(self, scope, receive, send, limit: int, what: str) -> None:
        """The app with its body bounded by `limit` bytes: 413 from the Content-Length, or as soon as the counted
        body passes it; then the app is told the client has gone (it stops reading) and what it answers is
        dropped. (An exception would not do: the form parser turns it into a 400.)"""
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        detail = f"the {what} is larger than {size}"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413, detail)
            return
        seen, started, refused = 0, False, False

        async def counted():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = True
                if not started:
                    await _answer(send, 413, detail)
                return {"type": "http.disconnect"}
            return message

        async def sending(message):
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, counted, sending)


async def _answer(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
