"""funcd's Python runtime server: loads one function handler and serves it over HTTP, following
docs/runtime-contract.md. It runs inside the sandbox with the system's python3 and nothing but the
standard library, and it sits on the hot path of every invocation and every cold start, so it imports
little at start-up (json, traceback, asyncio and importlib.util are imported when first needed).

Why not http.server.ThreadingHTTPServer or asyncio: both cost more to import than everything else
together. `import http.server` pulls in http.client, ssl and the email package (about 45 ms on the
reference machine, where a bare interpreter starts in 9 ms), and `import asyncio` about 40 ms. So this
file keeps ThreadingHTTPServer's model -- one thread per connection, HTTP/1.1 with keep-alive (the
gateway pools connections) -- over the socket module, with the little HTTP/1.1 the gateway and curl
speak: Content-Length and chunked request bodies, Expect: 100-continue, keep-alive, HEAD. Threads
rather than an event loop also let /healthz answer while a handler blocks, and let a stuck handler be
abandoned at its timeout. asyncio is imported only for `async def` handlers, which share one event
loop running in its own thread (module-level clients such as an aiohttp session stay bound to it).
"""

import contextvars
import io
import os
import select
import signal
import socket
import stat
import sys
import threading
import time

# ---------------------------------------------------------------------------------------------------
# Log tagging. Installed before anything else runs, so the handler module and every logging handler it
# creates write through it.

#: The current invocation's log prefix (b"\x1e<request-id>\x1f"); None outside invocations.
_PREFIX = contextvars.ContextVar("funcd_log_prefix", default=None)


class _TaggedStream(io.TextIOBase):
    """sys.stdout / sys.stderr: prefixes each line written during an invocation with its request id.

    A line left open by one writer is ended before another writer's output, so a tag always starts a
    line. Output is written to the file descriptor as soon as a write contains a newline (the driver
    reads pipes, where Python's own streams would hold output in a block buffer), or on flush().
    """

    encoding = "utf-8"
    errors = "backslashreplace"
    line_buffering = True

    def __init__(self, fd, name):
        super().__init__()
        self._fd = fd
        self.name = name
        # Reentrant: a __del__ or a warning may write while this thread is mid-write.
        self._lock = threading.RLock()
        self._pending = bytearray()
        #: The prefix of the line left open; b"" when untagged output left it open; None at a line start.
        self._open = None
        self.buffer = _TaggedBuffer(self)

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.write_bytes(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def write_bytes(self, data):
        prefix = _PREFIX.get()
        with self._lock:
            opened = self._open
            if prefix is None:
                out = b"\n" + data if opened else data
                self._open = None if data.endswith(b"\n") else b""
            else:
                start = b"" if opened == prefix else prefix if opened is None else b"\n" + prefix
                # Every newline but a final one starts a new tagged line.
                out = start + data[:-1].replace(b"\n", b"\n" + prefix) + data[-1:]
                self._open = None if data.endswith(b"\n") else prefix
            self._pending += out
            if b"\n" in out or len(self._pending) > 8192:
                self._flush_locked()

    def _flush_locked(self):
        view = memoryview(self._pending)
        try:
            while view:
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:
                    select.select([], [self._fd], [], 1)  # a non-blocking pipe that is full: wait
        except OSError:
            pass  # Nobody reads the pipe any more: nothing useful can be done with the output.
        finally:
            view.release()
            self._pending.clear()

    def flush(self):
        with self._lock:
            if self._pending:
                self._flush_locked()

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def isatty(self):
        try:
            return os.isatty(self._fd)
        except OSError:
            return False


class _TaggedBuffer:
    """sys.stdout.buffer: bytes written here are tagged like text written to the stream."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data):
        data = bytes(data)
        if data:
            self._stream.write_bytes(data)
        return len(data)

    def flush(self):
        self._stream.flush()

    def writable(self):
        return True

    def fileno(self):
        return self._stream.fileno()

    def isatty(self):
        return self._stream.isatty()


def _log_prefix(request_id):
    # Control characters in the id would break the driver's line framing, so they never reach the
    # prefix; and the driver only reads a tag that ends within 256 characters, so a long id is cut.
    safe = "".join("?" if ord(c) < 0x20 or c == "\x7f" else c for c in request_id[:200])
    return b"\x1e" + safe.encode("utf-8", "backslashreplace") + b"\x1f"


# ---------------------------------------------------------------------------------------------------
# Configuration (see "the environment" in docs/runtime-contract.md).


def _fail(message, code=1):
    sys.stderr.write(f"funcd: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def _positive_int(name, fallback):
    raw = os.environ.get(name, "")
    if raw == "":
        return fallback
    if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        _fail(f'{name} "{raw}" is not a positive integer')
    return int(raw)


def _parse_listen(listen):
    """An absolute unix socket path, or a TCP port, or host:port ([v6]:port)."""
    if listen.startswith("/"):
        return (socket.AF_UNIX, listen)
    host, _, digits = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 5 and int(digits) <= 65535):
        _fail(f'FUNCD_LISTEN "{listen}" is not a socket path, port or host:port')
    return (None, (host or None, int(digits)))


FUNCTION_DIR = os.path.abspath(os.environ.get("FUNCD_FUNCTION_DIR") or ".")
HANDLER = os.environ.get("FUNCD_HANDLER") or "handler.main"
FUNCTION_NAME = os.environ.get("FUNCD_FUNCTION_NAME") or os.path.basename(FUNCTION_DIR)
REVISION = os.environ.get("FUNCD_REVISION", "")
RUNTIME = os.environ.get("FUNCD_RUNTIME") or "python3"
LISTEN_TEXT = os.environ.get("FUNCD_LISTEN") or "8080"

# The gateway pools connections to instances; outliving its idle timeout avoids racing a reused socket
# that this side is just closing (which the gateway would see as a reset).
KEEP_ALIVE_TIMEOUT_S = 65
# Node's default limit on a request's head (request line and headers).
MAX_HEAD_BYTES = 16 * 1024

PROBLEM_BASE = "https://funcd.dev/errors#"
TEXT = "text/plain; charset=utf-8"
BYTES = "application/octet-stream"
JSON_TYPE = "application/json"
PROBLEM = "application/problem+json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READY = b'{"status":"ready"}'
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BUCKET_LABELS = tuple(str(b) for b in BUCKETS) + ("+Inf",)

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    413: "Payload Too Large", 415: "Unsupported Media Type", 417: "Expectation Failed",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------
# What a handler receives.


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

    getRemainingTimeInMillis = get_remaining_time_in_millis  # Node's name, for ports


class Headers(dict):
    """Header names are kept lower-case, and looked up case-insensitively."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__()
        self.update(items)

    def __getitem__(self, name):
        return super().__getitem__(name.lower() if isinstance(name, str) else name)

    def __setitem__(self, name, value):
        super().__setitem__(name.lower(), value)

    def __delitem__(self, name):
        super().__delitem__(name.lower() if isinstance(name, str) else name)

    def __contains__(self, name):
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name, default=None):
        return super().get(name.lower() if isinstance(name, str) else name, default)

    def pop(self, name, *default):
        return super().pop(name.lower() if isinstance(name, str) else name, *default)

    def setdefault(self, name, default=None):
        return super().setdefault(name.lower(), default)

    def update(self, items=(), **more):
        for name, value in (items.items() if hasattr(items, "items") else items):
            self[name] = value
        for name, value in more.items():
            self[name] = value


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
        """The URL the client used, as far as proxies tell: scheme and host from X-Forwarded-*."""
        headers = self.headers
        scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
        host = (headers.get("x-forwarded-host") or headers.get("host") or "localhost").split(",")[0]
        prefix = headers.get("x-forwarded-prefix") or ""
        query = f"?{self.query_string}" if self.query_string else ""
        return f"{scheme}://{host.strip()}{prefix}{self.path}{query}"

    @property
    def json(self):
        """The body parsed as JSON when its content type is JSON, else None."""
        if self._json is _UNSET:
            self._json = None
            if self.body and _is_json(_media_type(self.headers.get("content-type"))):
                self._json = _decode_json(self.body, "application/json")
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
        self._status = _check_status(code)

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
        if isinstance(data, str):
            data = data.encode()
        self.body = bytes(data) if self.body is None else _as_bytes(self.body) + bytes(data)


_UNSET = object()

# ---------------------------------------------------------------------------------------------------
# Loading the handler.


def _fatal(message, err=None):
    """Exit 3, which the driver reports as a failed deploy showing this output."""
    details = "" if err is None else _format_error(err)
    sys.stderr.write(f"funcd: {message}\n{details}")
    sys.stderr.flush()
    os._exit(3)


def _load_handler():
    dot = HANDLER.rfind(".")
    if dot <= 0 or dot == len(HANDLER) - 1:
        _fatal(f'FUNCD_HANDLER "{HANDLER}" is not of the form file.function (for example handler.main)')
    file, name = HANDLER[:dot], HANDLER[dot + 1 :]
    candidates = [f"{file}.py"]
    if file.endswith(".py"):
        candidates.append(file)  # "handler.py.main" names the file with its extension
    elif "." in file:
        candidates.append(file.replace(".", "/") + ".py")  # "lib.fn.main", dotted like a module
    found = next((c for c in candidates if os.path.isfile(os.path.join(FUNCTION_DIR, c))), None)
    if found is None:
        _fatal(f'Cannot load handler "{HANDLER}": none of {", ".join(candidates)} exists in {FUNCTION_DIR}')
    path = os.path.join(FUNCTION_DIR, found)
    try:
        module = _import_file(path, found[:-3].split("/"))
    except BaseException as err:
        hint = ""
        if isinstance(err, ModuleNotFoundError):
            hint = " (a dependency? list it in requirements.txt; the builder installs it in .python_packages)"
        _fatal(f'Cannot load handler "{HANDLER}": importing {path} failed{hint}', err)
    fn = getattr(module, name, None)
    if callable(fn):
        # Whether the same function is also the module's `main`, which keeps `handler` Kubeless (auto style).
        return fn, name, getattr(module, "main", None) is fn
    what = "is missing" if not hasattr(module, name) else f"is not callable (it is a {type(fn).__name__})"
    names = sorted(
        key
        for key, value in vars(module).items()
        if not key.startswith("_") and callable(value) and not isinstance(value, type(sys))
    )
    _fatal(
        f'Cannot load handler "{HANDLER}": the function "{name}" of {path} {what}; '
        f"its callables are: {', '.join(names) or '(none)'}"
    )


def _import_file(path, parts):
    """Import the handler file under its module name (lib/fn.py as lib.fn, so relative imports and
    `import handler` elsewhere see the same module); fall back to loading the file directly when that
    name is not importable or already names another module (a handler called json.py, say)."""
    name = ".".join(parts)
    if all(part.isidentifier() for part in parts) and name not in sys.modules:
        __import__(name)
        module = sys.modules[name]
        if os.path.realpath(getattr(module, "__file__", None) or "") == os.path.realpath(path):
            return module
        del sys.modules[name]
    import importlib.util

    unique = "funcd_handler_" + "".join(c if c.isalnum() else "_" for c in name)
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module


def _call_shape(fn):
    """How many of (event, context) fn takes: like JavaScript, a handler may declare fewer."""
    target, bound = fn, 0
    if hasattr(fn, "__func__"):
        target, bound = fn.__func__, 1
    code = getattr(target, "__code__", None)
    if code is None or code.co_flags & 0x04:  # not plain Python, or *args
        return 2, False
    return min(2, max(0, code.co_argcount - bound)), bool(code.co_flags & 0x80)  # CO_COROUTINE


# ---------------------------------------------------------------------------------------------------
# One invocation.


class Incoming:
    """One request as read off a connection: what a handler style builds its event from."""

    __slots__ = (
        "method", "path", "search", "version", "headers", "raw_headers", "body", "peer", "request_id",
        "started", "deadline",
    )  # fmt: skip


class _Call:
    """The handler's outcome, filled in by its worker thread."""

    __slots__ = ("result", "error", "finished", "timed_out")

    def __init__(self):
        self.result = None
        self.error = None
        self.finished = False
        self.timed_out = False


def _run_handler(call, args):
    """The worker thread: call the handler, and await it when it returns an awaitable."""
    try:
        result = MAIN(*args[:MAIN_ARITY])
        if hasattr(result, "__await__"):
            result = _await(result)
        call.result = result
    except BaseException as err:  # whatever the handler raises is its failure
        call.error = err
        # Past the timeout the 408 has been sent; as in Node, a late failure is not reported.
        if not call.timed_out:
            _report(err)
    call.finished = True


_loop = None
_loop_lock = threading.Lock()


def _event_loop():
    """The event loop every async handler runs on, in its own thread, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            import asyncio

            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="funcd-asyncio", daemon=True).start()
            _loop = loop
    return _loop


def _await(awaitable):
    import asyncio

    async def run():
        return await awaitable

    # The task copies this thread's context, so the handler's output is tagged like a sync handler's.
    return asyncio.run_coroutine_threadsafe(run(), _event_loop()).result()


def _report(err):
    """The error and its traceback to stderr (tagged: called while the invocation's prefix is set)."""
    sys.stderr.write(f'funcd: function "{FUNCTION_NAME}" failed:\n{_format_error(err)}')


def _format_error(err):
    """The traceback without its leading frames from this file and the standard library (worker
    thread, futures, importlib), which say nothing about the function's code."""
    import traceback

    stdlib = os.path.dirname(os.__file__)
    tb = err.__traceback__
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if file != __file__ and not file.startswith((stdlib, "<frozen ")):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb))


def _invoke(req):
    """Build the handler's arguments, call it, map its result. Returns (status, headers, body, counted):
    counted is False when the handler never ran (a body that cannot be decoded)."""
    try:
        args, response = PREPARE(req)
    except ValueError as err:
        return (*_problem(400, "bad-request", "BAD_REQUEST", "Bad request", str(err)), False)
    call = _Call()
    # The worker runs in a copy of this thread's context, so the handler's output is tagged.
    worker = threading.Thread(
        target=contextvars.copy_context().run, args=(_run_handler, call, args), daemon=True
    )
    worker.start()
    worker.join(max(0.0, req.deadline - time.monotonic()))
    if not call.finished:
        # A thread cannot be stopped (nor, per the contract, is a coroutine): the handler is abandoned,
        # and the gateway replaces the instance.
        call.timed_out = True
        detail = f'Function "{FUNCTION_NAME}" did not finish within its timeout of {TIMEOUT_MS} ms'
        status, out, payload = _problem(
            408, "function-timeout", "FUNCTION_TIMEOUT", "Function timed out", detail
        )
        out.append(("x-funcd-recycle", "1"))
        return status, out, payload, True
    if call.error is None:
        try:
            return (*SHAPE(call.result, response), True)
        except Exception as err:  # an unsendable result is the function's failure
            call.error = err
            _report(err)
    return (*_function_error(call.error), True)


def _function_error(err):
    detail = f"{type(err).__name__}: {err}"
    return _problem(500, "function-error", "FUNCTION_ERROR", "The function threw an error", detail)


def _kubeless_args(req):
    """The Kubeless event and context (see "Kubeless style" in the contract), and the response object."""
    headers = req.headers
    content_type = headers.get("content-type")
    data = _decode_body(req.body, content_type, req.method)
    query = _parse_query(req.search)
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
    context = Context(BASE_CONTEXT)
    context["request_id"] = context["requestId"] = req.request_id
    object.__setattr__(context, "_deadline", req.deadline)
    return (event, context), response


def _problem(status, slug, code, title, detail):
    import json

    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, "code": code}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return status, [("content-type", PROBLEM)], text.encode()


def _result_to_http(result, response):
    """Map a handler's return value onto (status, headers, body); see "Results" in the contract."""
    headers = Headers(response.headers)
    if response.body is not None:
        return _shaped(response.status, headers, response.body, False)
    status = response.status
    if result is None:
        return _finish(status, headers, None, b"")
    if isinstance(result, str):
        return _finish(status, headers, TEXT, result.encode())
    if isinstance(result, (bytes, bytearray, memoryview)):
        return _finish(status, headers, BYTES, bytes(result))
    if isinstance(result, dict) and _is_int(result.get("statusCode")):
        extra = result.get("headers")
        if isinstance(extra, dict):
            headers.update(extra)
        is_base64 = result.get("isBase64Encoded") is True
        return _shaped(result["statusCode"], headers, result.get("body"), is_base64)
    if isinstance(result, tuple) and len(result) in (2, 3) and _is_int(result[1]):
        if len(result) == 3 and isinstance(result[2], dict):
            headers.update(result[2])
        return _shaped(result[1], headers, result[0], False)
    return _finish(status, headers, JSON_TYPE, _to_json(result))


def _shaped(status, headers, body, is_base64):
    """`{statusCode, headers, body, isBase64Encoded}`, the Lambda/OpenFaaS shape (and tuples)."""
    status = _check_status(int(status))
    # 204 and 304 carry no body, so no content-type describing one either.
    if body is None or status in (204, 304):
        return _finish(status, headers, None, b"")
    if isinstance(body, str):
        if is_base64:
            import binascii

            padded = body.strip().replace("-", "+").replace("_", "/")
            return _finish(status, headers, BYTES, binascii.a2b_base64(padded + "=" * (-len(padded) % 4)))
        return _finish(status, headers, TEXT, body.encode())
    if isinstance(body, (bytes, bytearray, memoryview)):
        return _finish(status, headers, BYTES, bytes(body))
    return _finish(status, headers, JSON_TYPE, _to_json(body))


def _finish(status, headers, default_type, body):
    if default_type is not None and "content-type" not in headers:
        headers["content-type"] = default_type
    lines = []
    for name, value in headers.items():
        if name in FRAMING_HEADERS or value is None:
            continue  # the server frames the body itself
        for item in value if isinstance(value, (list, tuple)) else (value,):
            lines.append((name, "true" if item is True else "false" if item is False else str(item)))
    return _check_status(status), lines, body


#: Set by the server from the body it sends; a handler's value would contradict it.
FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))


def _check_status(status):
    if not 100 <= status <= 999:
        raise ValueError(f"Invalid status code: {status}")
    return status


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_bytes(body):
    return body.encode() if isinstance(body, str) else bytes(body)


def _to_json(value):
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


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


def _decode_body(body, content_type, method):
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


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _unquote(text):
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


def _parse_query(search):
    """The query string as a dict; a repeated key becomes a list of its values."""
    query = {}
    if not search:
        return query
    for pair in search.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key, value = _unquote(key), _unquote(value)
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


def _uuid4():
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------------------------------------------
# Metrics.

_metrics_lock = threading.Lock()
_calls = 0
_failures = 0
_duration_sum = 0.0
_bucket_counts = [0] * (len(BUCKETS) + 1)


def _record(seconds, failed):
    global _calls, _failures, _duration_sum
    i = 0
    while i < len(BUCKETS) and seconds > BUCKETS[i]:
        i += 1
    with _metrics_lock:
        _calls += 1
        _failures += failed
        _duration_sum += seconds
        _bucket_counts[i] += 1


def _number(value):
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _render_metrics():
    """Prometheus text exposition, written by hand (no client library in the sandbox)."""
    name = FUNCTION_NAME.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    label = f'function="{name}"'
    with _metrics_lock:
        calls, failures, total, counts = _calls, _failures, _duration_sum, list(_bucket_counts)
    out = [
        "# HELP function_calls_total Invocations of the function.\n",
        "# TYPE function_calls_total counter\n",
        f"function_calls_total{{{label}}} {calls}\n",
        "# HELP function_failures_total Invocations that threw, timed out or answered a 5xx status.\n",
        "# TYPE function_failures_total counter\n",
        f"function_failures_total{{{label}}} {failures}\n",
        "# HELP function_duration_seconds Time from receiving an invocation to answering it.\n",
        "# TYPE function_duration_seconds histogram\n",
    ]
    cumulative = 0
    for le, count in zip(BUCKET_LABELS, counts):
        cumulative += count
        out.append(f'function_duration_seconds_bucket{{{label},le="{le}"}} {cumulative}\n')
    out.append(f"function_duration_seconds_sum{{{label}}} {_number(total)}\n")
    out.append(f"function_duration_seconds_count{{{label}}} {calls}\n")
    return "".join(out).encode()


# ---------------------------------------------------------------------------------------------------
# HTTP/1.1.


class _HttpError(Exception):
    """A request this server cannot read: answered with `status`, then the connection is closed."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


#: Characters of an HTTP token; `name.translate(None, _TOKEN)` leaves whatever is not one.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = b"0123456789abcdefABCDEF"
KEEP_ALIVE = b"connection: keep-alive\r\nkeep-alive: timeout=%d\r\n\r\n" % KEEP_ALIVE_TIMEOUT_S
CLOSE = b"connection: close\r\n\r\n"
# Duplicates of these are dropped and `cookie` is joined with "; ", as Node's IncomingMessage does.
_SINGLE_HEADERS = frozenset((
    "age", "authorization", "content-length", "content-type", "etag", "expires", "from", "host",
    "if-modified-since", "if-unmodified-since", "last-modified", "location", "max-forwards",
    "proxy-authorization", "referer", "retry-after", "server", "user-agent",
))  # fmt: skip

_state_lock = threading.Lock()
_all_idle = threading.Condition(_state_lock)
#: Open connections -> whether a request is being handled on them.
_connections = {}
_draining = False
_date_cache = (0, b"")


def _read_line(rfile, budget):
    line = rfile.readline(budget + 1)
    if len(line) > budget:
        raise _HttpError(431)
    return line


def _read_head(rfile, sock, peer):
    """The next request, without its body, and whether the client asked to close the connection after
    it; None at a clean end of stream."""
    budget = MAX_HEAD_BYTES
    line = _read_line(rfile, budget)
    while line in (b"\r\n", b"\n"):  # RFC 9112: tolerate empty lines before a request
        line = _read_line(rfile, budget)
    if not line.endswith(b"\n"):
        return None  # the peer closed the connection, perhaps mid-line: nobody to answer
    budget -= len(line)
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or parts[0].translate(None, _TOKEN):
        raise _HttpError(400)
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _HttpError(505 if version.startswith(b"HTTP/") else 400)
    _set_busy(sock, True)
    started = time.monotonic()
    headers = Headers()
    raw_headers = []
    while True:
        line = _read_line(rfile, budget)
        budget -= len(line)
        if not line.endswith(b"\n"):
            raise _HttpError(400)
        line = line.rstrip(b"\r\n")
        if not line:
            break
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN):
            raise _HttpError(400)  # includes obsolete line folding, which RFC 9112 lets us reject
        name = name.decode("latin-1").lower()
        value = value.strip(b" \t").decode("latin-1")
        raw_headers.append((name, value))
        previous = dict.get(headers, name)
        if previous is None:
            dict.__setitem__(headers, name, [value] if name == "set-cookie" else value)
        elif name == "content-length" and value != previous:
            raise _HttpError(400)  # conflicting lengths: a smuggling attempt or a broken client
        elif name == "set-cookie":
            previous.append(value)
        elif name not in _SINGLE_HEADERS:
            dict.__setitem__(headers, name, previous + ("; " if name == "cookie" else ", ") + value)
    tokens = headers.get("connection", "").lower()
    close = "close" in tokens if version == b"HTTP/1.1" else "keep-alive" not in tokens
    req = Incoming()
    req.method = method.decode("latin-1")
    target = target.decode("latin-1")
    q = target.find("?")
    req.path, req.search = (target, "") if q == -1 else (target[:q], target[q + 1 :])
    req.version = version.decode("latin-1")
    req.headers = headers
    req.raw_headers = raw_headers
    req.peer = peer
    req.started = started
    req.deadline = started + TIMEOUT_MS / 1000
    return req, close


def _read_body(rfile, sock, version, headers):
    """The whole request body. The gateway bounds its size, so buffering it is safe."""
    te = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if te is None and length in (None, "0"):
        return b""
    if te is not None and length is not None:
        raise _HttpError(400)  # as Node's parser: both framings at once invite request smuggling
    if te is not None and te.rsplit(",", 1)[-1].strip().lower() != "chunked":
        raise _HttpError(400)
    if te is None and not (length.isascii() and length.isdigit()):
        raise _HttpError(400)
    expect = headers.get("expect")
    if expect is not None and version == "HTTP/1.1":
        if expect.lower() != "100-continue":
            raise _HttpError(417)
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if te is None:
        body = rfile.read(int(length))
        if len(body) != int(length):
            raise ConnectionError("the client closed the connection mid-body")
        return body
    chunks = []
    while True:
        line = _read_line(rfile, 1024).rstrip(b"\r\n")
        size = line.split(b";", 1)[0].strip()
        if not size or size.translate(None, _HEX):
            raise _HttpError(400)
        size = int(size, 16)
        if size == 0:
            break
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise _HttpError(400)
        chunks.append(chunk)
    while _read_line(rfile, MAX_HEAD_BYTES) not in (b"\r\n", b"\n", b""):
        pass  # trailers: ignored
    return b"".join(chunks)


def _http_date():
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        # Python never changes LC_TIME from "C", so day and month names are English.
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode())
    return _date_cache[1]


def _header_line(name, value):
    if not name or name.encode("latin-1", "replace").translate(None, _TOKEN):
        raise ValueError(f'Invalid header name ["{name}"]')
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f'Invalid character in header content ["{name}"]')
    try:
        return f"{name}: {value}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f'Invalid character in header content ["{name}"]') from None


def _head_bytes(status, headers, body, keep_alive):
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode()]
    lines.extend(_header_line(name, value) for name, value in headers)
    if status >= 200 and status not in (204, 304):
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"date: " + _http_date() + b"\r\n")
    lines.append(KEEP_ALIVE if keep_alive else CLOSE)
    return b"".join(lines)


def _send(sock, status, headers, body, keep_alive, head_only):
    try:
        head = _head_bytes(status, headers, body, keep_alive)
    except ValueError as err:
        # A header the handler set cannot be sent; report it as the function's failure.
        _report(err)
        status, headers, body = _function_error(err)
        head = _head_bytes(status, headers, body, keep_alive)
    if head_only or status in (204, 304) or not body:
        sock.sendall(head)
    elif len(body) < 65536:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        sock.sendall(body)
    return status


def _set_busy(sock, busy):
    with _state_lock:
        _connections[sock] = busy
        if not busy:
            _all_idle.notify_all()


def _serve_connection(sock, peer):
    """One keep-alive connection: requests one after another, until either side closes it."""
    with _state_lock:
        if _draining:
            sock.close()
            return
        _connections[sock] = False
    rfile = sock.makefile("rb")
    try:
        while True:
            try:
                head = _read_head(rfile, sock, peer)
                if head is None:
                    return
                req, close = head
                req.body = _read_body(rfile, sock, req.version, req.headers)
            except _HttpError as err:
                reason = REASONS.get(err.status, "Bad Request").encode()
                sock.sendall(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n%s" % (err.status, reason, CLOSE))
                return
            _handle(sock, req, not close)
            _set_busy(sock, False)
            if close or _draining:
                return
    except (OSError, ValueError, OverflowError, MemoryError):
        # The peer went away or timed out idle, or announced a body too big to hold: nothing to answer.
        pass
    finally:
        with _state_lock:
            _connections.pop(sock, None)
            _all_idle.notify_all()
        rfile.close()
        sock.close()


def _handle(sock, req, keep_alive):
    """Answer one request: the server's own endpoints, or an invocation."""
    headers = req.headers
    given_id = headers.get("x-request-id")
    head_only = req.method == "HEAD"
    # The gateway always marks invocations, so a function can serve /healthz and /metrics itself.
    if req.method == "GET" and headers.get("x-funcd-invoke") != "1" and req.path in ("/healthz", "/metrics"):
        out = [] if given_id is None else [("x-request-id", given_id)]
        if req.path == "/healthz":
            out.append(("content-type", JSON_TYPE))
            _send(sock, 200, out, READY, keep_alive and not _draining, head_only)
        else:
            out.append(("content-type", METRICS_TYPE))
            _send(sock, 200, out, _render_metrics(), keep_alive and not _draining, head_only)
        return
    req.request_id = given_id or _uuid4()
    token = _PREFIX.set(_log_prefix(req.request_id))
    counted, status = False, 500
    try:
        try:
            status, out, payload, counted = _invoke(req)
        except Exception as err:  # a bug here must not take the connection down silently
            _report(err)
            (status, out, payload), counted = _function_error(err), True
        if not any(name == "x-request-id" for name, _ in out):  # unless the handler set its own
            out.insert(0, ("x-request-id", req.request_id))
        status = _send(sock, status, out, payload, keep_alive and not _draining, head_only)
    finally:
        _PREFIX.reset(token)
        if counted:
            _record(time.monotonic() - req.started, status >= 500 or status == 408)


# ---------------------------------------------------------------------------------------------------
# Listening and draining.


def _listen():
    family, address = LISTEN
    try:
        if family == socket.AF_UNIX:
            _remove_stale_socket(address)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(address)
        else:
            host, port = address
            if host is None and socket.has_dualstack_ipv6():
                listener = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
            else:
                found = socket.getaddrinfo(
                    host or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
                listener = socket.create_server(found[0][4][:2], family=found[0][0])
        listener.listen(511)
    except OSError as err:
        _fail(f"cannot listen on {LISTEN_TEXT}: {err}")
    listener.setblocking(False)
    return listener


def _remove_stale_socket(path):
    """A previous instance that was killed leaves its socket file behind, and bind() would fail on it."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass  # nothing there: nothing to remove


def _on_signal(signum, frame):
    global _draining
    _draining = True


def _serve(listener):
    """Accept connections until SIGTERM/SIGINT. The signal may be delivered to any thread, so the main
    thread watches a wakeup fd next to the listener rather than relying on being interrupted."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    tcp = listener.family != socket.AF_UNIX
    while not _draining:
        ready, _, _ = select.select([listener, wake_r], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        if listener not in ready or _draining:
            continue
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue
        except OSError as err:  # out of file descriptors, say: wait rather than spin
            sys.stderr.write(f"funcd: accept failed: {err}\n")
            time.sleep(0.1)
            continue
        sock.settimeout(KEEP_ALIVE_TIMEOUT_S)
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = address[0] if tcp and isinstance(address, tuple) else ""
        threading.Thread(target=_serve_connection, args=(sock, peer), daemon=True).start()


def _drain(listener):
    """Stop accepting connections, let in-flight requests finish, then exit 0. Bounded by the timeout,
    since no invocation may legitimately run longer; the driver's SIGKILL is the backstop anyway."""
    listener.close()
    if LISTEN[0] == socket.AF_UNIX:
        try:
            os.unlink(LISTEN[1])  # so nothing can connect to a gone instance
        except OSError:
            pass
    deadline = time.monotonic() + TIMEOUT_MS / 1000 + 1
    with _state_lock:
        while True:
            # Idle pooled connections would otherwise hold the instance up for their keep-alive timeout.
            for sock, busy in list(_connections.items()):
                if not busy:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            remaining = deadline - time.monotonic()
            if not any(_connections.values()) or remaining <= 0:
                break
            _all_idle.wait(remaining)
    _exit(0)


def _exit(code):
    # os._exit: a handler thread may be stuck for good, and interpreter shutdown would wait on it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _handler_style():
    """FUNCD_HANDLER_STYLE: how the handler is called (see "Handler styles" in the contract)."""
    raw = os.environ.get("FUNCD_HANDLER_STYLE", "")
    if raw in ("auto", "kubeless", "lambda"):
        return raw
    if raw == "":
        return "auto"
    _fail(f'FUNCD_HANDLER_STYLE "{raw}" is not one of auto, kubeless, lambda')


def _lambda_style(memory_limit_mb):
    """The Lambda style lives in lambda_style.py beside this file, loaded only by functions that use it."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lambda_style.py")
    spec = importlib.util.spec_from_file_location("funcd_lambda_style", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    style = module.LambdaStyle(
        function_name=FUNCTION_NAME,
        revision=REVISION,
        memory_limit_mb=memory_limit_mb,
        unquote=_unquote,
        shaped=_shaped,
        to_json=_to_json,
        new_headers=Headers,
    )
    return style.prepare, style.shape


def main():
    global MAIN, MAIN_ARITY, TIMEOUT_MS, LISTEN, BASE_CONTEXT, PREPARE, SHAPE
    sys.stdout = _TaggedStream(1, "<stdout>")
    sys.stderr = _TaggedStream(2, "<stderr>")
    TIMEOUT_MS = _positive_int("FUNCD_TIMEOUT_MS", 30_000)
    memory_limit_mb = _positive_int("FUNCD_MEMORY_LIMIT_MB", 256)
    memory_limit = f"{memory_limit_mb}Mi"
    style = _handler_style()
    LISTEN = _parse_listen(LISTEN_TEXT)
    BASE_CONTEXT = {
        "function-name": FUNCTION_NAME,
        "timeout": TIMEOUT_MS // 1000 if TIMEOUT_MS % 1000 == 0 else TIMEOUT_MS / 1000,
        "runtime": RUNTIME,
        "memory-limit": memory_limit,
        "function_name": FUNCTION_NAME,
        "functionName": FUNCTION_NAME,
        "timeout_ms": TIMEOUT_MS,
        "timeoutMs": TIMEOUT_MS,
        "memory_limit": memory_limit,
        "memoryLimit": memory_limit,
        "revision": REVISION,
    }

    # The function's folder, then its dependencies (`pip install --target .python_packages`), come
    # before everything else, so they win over same-named system packages; this file's own folder is
    # not the function's business.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    packages = os.path.join(FUNCTION_DIR, ".python_packages")
    sys.path[:0] = [FUNCTION_DIR, packages] if os.path.isdir(packages) else [FUNCTION_DIR]
    # The function's folder is read-only in the sandbox, and out of it a deploy should not change it.
    sys.dont_write_bytecode = True

    MAIN, name, also_main = _load_handler()
    MAIN_ARITY, is_async = _call_shape(MAIN)
    # Decided once, here, never per request.
    if style == "lambda" or (style == "auto" and name == "handler" and not also_main):
        PREPARE, SHAPE = _lambda_style(memory_limit_mb)
    else:
        PREPARE, SHAPE = _kubeless_args, _result_to_http
    if is_async:
        _event_loop()  # import asyncio now rather than in the first invocation
    listener = _listen()
    _serve(listener)
    _drain(listener)


# Set once by main() before the server listens.
MAIN = None
MAIN_ARITY = 2
TIMEOUT_MS = 30_000
LISTEN = None
BASE_CONTEXT = {}
PREPARE = None
SHAPE = None

if __name__ == "__main__":
    main()
