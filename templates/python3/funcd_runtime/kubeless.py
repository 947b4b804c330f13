"""The Kubeless handler style ("Kubeless style" in docs/runtime-contract.md): `main(event, context)`, with
the request decoded into `event["data"]`, and the handler's result mapped onto the response."""

import time

from . import responses
from .http1 import Headers
from .responses import BYTES, JSON_TYPE, TEXT


class KubelessStyle:
    """The two steps the runtime runs per invocation: `prepare` turns a request into the handler's
    arguments (ValueError for a body that cannot be decoded, answered 400), and `shape` turns the
    handler's result into (status, header lines, body)."""

    def __init__(self, *, function_name, runtime, revision, timeout_ms, memory_limit_mb):
        memory_limit = f"{memory_limit_mb}Mi"
        self._base_context = {
            "function-name": function_name,
            "timeout": timeout_ms // 1000 if timeout_ms % 1000 == 0 else timeout_ms / 1000,
            "runtime": runtime,
            "memory-limit": memory_limit,
            "function_name": function_name,
            "functionName": function_name,
            "timeout_ms": timeout_ms,
            "timeoutMs": timeout_ms,
            "memory_limit": memory_limit,
            "memoryLimit": memory_limit,
            "revision": revision,
        }

    def prepare(self, req):
        return self.build(req, decode_body(req.body, req.headers.get("content-type"), req.method))

    def build(self, req, data):
        """The arguments and the response object for a request whose body decoded to `data`."""
        headers = req.headers
        content_type = headers.get("content-type")
        query = parse_query(req.search)
        response = Response()
        request = Request(req.method, req.path, req.search, headers, query, req.body)
        event = Event(
            data=data,
            method=req.method,
            path=req.path,
            query=query,
            headers=headers,
            extensions={"request": request, "response": response},
        )
        event["event-id"] = headers.get("event-id") or req.request_id
        event["event-type"] = headers.get("event-type") or content_type or JSON_TYPE
        event["event-time"] = headers.get("event-time") or _iso_now()
        event["event-namespace"] = headers.get("event-namespace") or "funcd"
        ce = {}
        for name, value in headers.items():
            if name.startswith("ce-"):
                event[name] = value
                ce[name[3:]] = value
        event["ce"] = ce
        context = Context(self._base_context)
        context["request_id"] = context["requestId"] = req.request_id
        object.__setattr__(context, "_deadline", req.deadline)
        return (event, context), response

    def shape(self, result, response):
        """See "Results" in the contract; a tuple (body, status[, headers]) is the statusCode dict's
        Python spelling, and what the handler set on extensions.response applies too."""
        headers = Headers(response.headers)
        if response.body is not None:
            return responses.shaped(response.status, headers, response.body, False)
        status = response.status
        if result is None:
            return responses.finish(status, headers, None, b"")
        if isinstance(result, str):
            return responses.finish(status, headers, TEXT, result.encode())
        if isinstance(result, (bytes, bytearray, memoryview)):
            return responses.finish(status, headers, BYTES, bytes(result))
        if isinstance(result, dict) and responses.is_int(result.get("statusCode")):
            if isinstance(result.get("headers"), dict):
                headers.update(result["headers"])
            is_base64 = result.get("isBase64Encoded") is True
            return responses.shaped(result["statusCode"], headers, result.get("body"), is_base64)
        if isinstance(result, tuple) and len(result) in (2, 3) and responses.is_int(result[1]):
            if len(result) == 3 and isinstance(result[2], dict):
                headers.update(result[2])
            return responses.shaped(result[1], headers, result[0], False)
        return responses.finish(status, headers, JSON_TYPE, responses.to_json(result))


class _AttrDict(dict):
    """A dict whose keys also read as attributes; `event.event_id` finds the key "event-id"."""

    __slots__ = ()

    def __getattr__(self, name):
        if not name.startswith("__"):
            if name in self:
                return self[name]
            dashed = name.replace("_", "-")
            if dashed in self:
                return self[dashed]
        raise AttributeError(f"{type(self).__name__} has no attribute or key {name!r}")

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class Event(_AttrDict):
    """The first argument of a handler: `event["data"]` and `event.data` both work."""

    __slots__ = ()


class Context(_AttrDict):
    """The second argument of a handler: the function's description plus the time left."""

    __slots__ = ("_deadline",)

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    getRemainingTimeInMillis = get_remaining_time_in_millis  # Node's name, for handlers ported from it


class RequestBody(bytes):
    """The raw request body. It is bytes; `read()` is there for code written for bottle's file-like
    `request.body`, and like bottle's it starts from the beginning each time."""

    def read(self, size=-1):
        return bytes(self) if size is None or size < 0 else bytes(self[:size])

    def getvalue(self):
        return bytes(self)


class Request:
    """`event["extensions"]["request"]`: the HTTP request, with the attributes common code reads from
    the bottle request Kyma exposes there (method, path, url, headers, query, body, json)."""

    __slots__ = ("method", "path", "query_string", "headers", "query", "body", "_json")

    def __init__(self, method, path, query_string, headers, query, body):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.query = query
        self.body = RequestBody(body)
        self._json = _UNSET

    @property
    def url(self):
        """The URL the client used, as far as proxies tell: scheme, host and prefix from X-Forwarded-*."""
        headers = self.headers
        scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
        host = (headers.get("x-forwarded-host") or headers.get("host") or "localhost").split(",")[0].strip()
        prefix = headers.get("x-forwarded-prefix") or ""
        query = f"?{self.query_string}" if self.query_string else ""
        return f"{scheme}://{host}{prefix}{self.path}{query}"

    @property
    def json(self):
        """The body parsed as JSON when its content type is JSON, else None."""
        if self._json is _UNSET:
            self._json = None
            if self.body and _is_json(_media_type(self.headers.get("content-type"))):
                self._json = _decode_json(self.body, JSON_TYPE)
        return self._json

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def get_header(self, name, default=None):
        return self.headers.get(name, default)


class Response:
    """`event["extensions"]["response"]`: what the handler wants on the response besides its return
    value. Headers set here are sent with any result; a status set here replaces the default 200 of a
    plain result. Writing a body here (`write()` or `body = ...`) makes it the answer, and the return
    value is then ignored."""

    __slots__ = ("headers", "body", "_status")

    def __init__(self):
        self.headers = Headers()
        self.body = None
        self._status = None

    @property
    def status(self):
        return 200 if self._status is None else self._status

    @status.setter
    def status(self, value):
        # bottle also takes "404 Not Found".
        code = value if isinstance(value, int) else int(str(value).split(" ", 1)[0])
        self._status = responses.check_status(code)

    status_code = status

    @property
    def content_type(self):
        return self.headers.get("content-type")

    @content_type.setter
    def content_type(self, value):
        self.headers["content-type"] = value

    def set_header(self, name, value):
        self.headers[name] = value

    def add_header(self, name, value):
        previous = self.headers.get(name)
        if previous is None:
            self.headers[name] = value
        else:
            self.headers[name] = [*previous, value] if isinstance(previous, list) else [previous, value]

    def get_header(self, name, default=None):
        return self.headers.get(name, default)

    def write(self, data):
        data = data.encode() if isinstance(data, str) else bytes(data)
        previous = self.body
        if previous is None:
            self.body = data
        else:
            self.body = (previous.encode() if isinstance(previous, str) else bytes(previous)) + data


_UNSET = object()


class BadBody(ValueError):
    """A body `event["data"]` cannot be decoded from (invalid JSON): a 400, never the function's failure.
    Raised from the event itself in the either style (either_style.py), which decodes it when read."""


def decode_body(body, content_type, method):
    """`event["data"]`: JSON types parsed, text types as str, anything else as bytes."""
    if not body:
        return None if method in ("GET", "HEAD") else ""
    if content_type is None:
        return body
    media = _media_type(content_type)
    if _is_json(media):
        return _decode_json(body, media)
    if media.startswith("text/") or media == "application/x-www-form-urlencoded":
        return body.decode("utf-8", "replace")
    return body


def _media_type(content_type):
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media):
    return media == JSON_TYPE or media.endswith("+json")


def _decode_json(body, media):
    import json

    try:
        return json.loads(body.decode("utf-8", "replace"))
    except ValueError as err:
        raise ValueError(f"The request body is not valid JSON (content-type {media}): {err}") from None


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def unquote(text):
    """Percent-decoding as URLSearchParams does it: "+" is a space, a bad escape stays as it is."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    parts = text.encode("utf-8").split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if len(part) >= 2 and part[0] in _HEX_DIGITS and part[1] in _HEX_DIGITS:
            out.append(int(part[:2], 16))
            out += part[2:]
        else:
            out += b"%" + part
    return out.decode("utf-8", "replace")


def parse_query(search):
    """The query string as a dict; a repeated key becomes a list of its values."""
    query = {}
    for pair in search.split("&") if search else ():
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key, value = unquote(key), unquote(value)
        previous = query.get(key)
        if previous is None:
            query[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            query[key] = [previous, value]
    return query


def _iso_now():
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)
