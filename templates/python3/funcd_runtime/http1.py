"""The HTTP/1.1 server: a thread per connection, HTTP/1.1 with keep-alive (the gateway pools connections),
on a unix socket or TCP, draining on SIGTERM.

Why not http.server.ThreadingHTTPServer, or asyncio: `import http.server` pulls in http.client, ssl and
the email package, about 45 ms on the reference machine where the whole server otherwise starts in about
15 ms, and `import asyncio` costs about 40 ms. So this module keeps ThreadingHTTPServer's model over the
socket module, with the HTTP/1.1 the gateway and curl speak: Content-Length and chunked request bodies,
`Expect: 100-continue`, HEAD, pipelined requests. Threads rather than an event loop also let /healthz
answer while a handler blocks its own thread.
"""

import collections
import os
import select
import signal
import socket
import stat
import sys
import threading
import time

# The gateway pools connections to instances; outliving its idle timeout avoids racing a reused socket
# that this side is just closing (which the gateway would see as a reset).
KEEP_ALIVE_TIMEOUT_S = 65
# Node's default limit on a request's head (request line and headers).
MAX_HEAD_BYTES = 16 * 1024

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    413: "Payload Too Large", 415: "Unsupported Media Type", 417: "Expectation Failed",
    418: "I'm a Teapot", 422: "Unprocessable Entity", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}  # fmt: skip

#: Characters of an HTTP token; `name.translate(None, _TOKEN)` leaves whatever is not one.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = b"0123456789abcdefABCDEF"
_KEEP_ALIVE = b"connection: keep-alive\r\nkeep-alive: timeout=%d\r\n\r\n" % KEEP_ALIVE_TIMEOUT_S
_CLOSE = b"connection: close\r\n\r\n"
# Duplicates of these are dropped and `cookie` is joined with "; ", as Node's IncomingMessage does.
_SINGLE_HEADERS = frozenset((
    "age", "authorization", "content-length", "content-type", "etag", "expires", "from", "host",
    "if-modified-since", "if-unmodified-since", "last-modified", "location", "max-forwards",
    "proxy-authorization", "referer", "retry-after", "server", "user-agent",
))  # fmt: skip


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
        for name, value in items.items() if hasattr(items, "items") else items:
            self[name] = value
        for name, value in more.items():
            self[name] = value


class Incoming:
    """One request as read off a connection. `headers` merges repeated headers as Node does;
    `raw_headers` keeps each line. The runtime fills in `request_id` and `deadline`, and may set `then`
    (None by default): a callable the server calls once the answer is sent (or could not be), after
    closing the connection, which such an answer always does."""

    __slots__ = (
        "method", "path", "search", "version", "headers", "raw_headers", "body", "peer", "started",
        "request_id", "deadline", "then",
    )  # fmt: skip


class HttpError(Exception):
    """A request this server cannot read: answered with `status`, then the connection is closed."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def parse_listen(listen):
    """FUNCD_LISTEN: ("unix", path) for an absolute path, else ("tcp", (host or None, port)) for a port
    or host:port ([v6]:port); None when it is neither."""
    if listen.startswith("/"):
        return "unix", listen
    host, _, digits = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 5 and int(digits) <= 65535):
        return None
    return "tcp", (host or None, int(digits))


def encode_headers(lines):
    """Response header lines as bytes; ValueError for a name or value that cannot be sent (a CR or LF
    would let a value inject headers)."""
    out = []
    for name, value in lines:
        if not name or name.encode("latin-1", "replace").translate(None, _TOKEN):
            raise ValueError(f'Invalid header name ["{name}"]')
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f'Invalid character in header content ["{name}"]')
        try:
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError(f'Invalid character in header content ["{name}"]') from None
    return b"".join(out)


class Server:
    """Serves `handle(request) -> (status, encoded header lines, body)` until SIGTERM or SIGINT."""

    def __init__(self, listen, handle):
        self._listen = listen
        self._handle = handle
        self._listener = None
        self._lock = threading.Lock()
        self._all_idle = threading.Condition(self._lock)
        #: Open connections -> whether a request is being handled on them.
        self._connections = {}
        self.draining = False
        self._date = (0, b"")
        #: Work for the main thread (see in_main_thread); None once serve() has returned.
        self._tasks = collections.deque()
        #: Written to wake the main thread up in serve(), by signals and by in_main_thread().
        self._wake_w = None

    def listen(self):
        """Bind and listen; OSError when that is not possible."""
        kind, address = self._listen
        if kind == "unix":
            _remove_stale_socket(address)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(address)
        elif address[0] is None and socket.has_dualstack_ipv6():
            listener = socket.create_server(("", address[1]), family=socket.AF_INET6, dualstack_ipv6=True)
        else:
            host, port = address
            found = socket.getaddrinfo(
                host or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            listener = socket.create_server(found[0][4][:2], family=found[0][0])
        listener.listen(511)
        listener.setblocking(False)
        self._listener = listener

    def serve(self):
        """Accept connections until SIGTERM or SIGINT. A signal may be delivered to any thread, so this
        (main) thread watches a wakeup fd beside the listener rather than rely on being interrupted; the
        same fd wakes it for work handed to it by in_main_thread()."""
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        listener = self._listener
        tcp = self._listen[0] == "tcp"
        try:
            self._accept(listener, wake_r, tcp)
        finally:
            with self._lock:
                tasks, self._tasks = self._tasks, None
            for task in tasks:
                task.fail(RuntimeError("the server is stopping"))

    def _accept(self, listener, wake_r, tcp):
        while not self.draining:
            ready, _, _ = select.select([listener, wake_r], [], [])
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                self._run_tasks()
            if listener not in ready or self.draining:
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
            threading.Thread(target=self._serve_connection, args=(sock, peer), daemon=True).start()

    def _on_signal(self, signum, frame):
        self.draining = True

    def in_main_thread(self, fn):
        """fn() run by the main thread (the one in serve()), for a connection thread that needs it: its
        result, or its exception raised here. The main thread is where a program's own code runs in a
        normal start, and some code insists on it (signal.signal(), asyncio.get_event_loop()). While it
        runs, no connection is accepted; connections already open are served."""
        if threading.current_thread() is threading.main_thread():
            return fn()
        task = _Task(fn)
        with self._lock:
            if self._tasks is None:
                raise RuntimeError("the server is stopping")
            self._tasks.append(task)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the main thread will look
        return task.result()

    def _run_tasks(self):
        while True:
            with self._lock:
                if not self._tasks:
                    return
                task = self._tasks.popleft()
            task.run()

    def drain(self, bound_s):
        """Stop accepting connections and wait (at most `bound_s`) for the requests being handled."""
        self._listener.close()
        if self._listen[0] == "unix":
            try:
                os.unlink(self._listen[1])  # so nothing can connect to a gone instance
            except OSError:
                pass
        deadline = time.monotonic() + bound_s
        with self._lock:
            while True:
                # Idle pooled connections would otherwise hold the instance up for their keep-alive timeout.
                for sock, busy in list(self._connections.items()):
                    if not busy:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                remaining = deadline - time.monotonic()
                if not any(self._connections.values()) or remaining <= 0:
                    return
                self._all_idle.wait(remaining)

    def _set_busy(self, sock, busy):
        with self._lock:
            self._connections[sock] = busy
            if not busy:
                self._all_idle.notify_all()

    def _serve_connection(self, sock, peer):
        """One keep-alive connection: requests one after another, until either side closes it."""
        with self._lock:
            if self.draining:
                sock.close()
                return
            self._connections[sock] = False
        rfile = sock.makefile("rb")
        then = None
        try:
            while True:
                try:
                    head = self._read_head(rfile, sock, peer)
                    if head is None:
                        return
                    req, close = head
                    req.body = _read_body(rfile, sock, req.version, req.headers)
                except HttpError as err:
                    reason = REASONS.get(err.status, "Bad Request").encode()
                    sock.sendall(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n%s" % (err.status, reason, _CLOSE))
                    return
                status, head, body = self._handle(req)
                then = req.then
                close = close or self.draining or then is not None
                self._send(sock, status, head, body, not close, req.method == "HEAD")
                self._set_busy(sock, False)
                if close:
                    return
        except (OSError, ValueError, OverflowError, MemoryError):
            # The peer went away or timed out idle, or announced a body too big to hold: nothing to answer.
            pass
        finally:
            with self._lock:
                self._connections.pop(sock, None)
                self._all_idle.notify_all()
            rfile.close()
            sock.close()
            if then is not None:
                then()

    def _read_head(self, rfile, sock, peer):
        """The next request, without its body, and whether the client asked to close the connection
        after it; None at a clean end of stream."""
        budget = MAX_HEAD_BYTES
        line = _read_line(rfile, budget)
        while line in (b"\r\n", b"\n"):  # RFC 9112: tolerate empty lines before a request
            line = _read_line(rfile, budget)
        if not line.endswith(b"\n"):
            return None  # the peer closed the connection, perhaps mid-line: nobody to answer
        budget -= len(line)
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or not parts[0] or not parts[1] or parts[0].translate(None, _TOKEN):
            raise HttpError(400)
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise HttpError(505 if version.startswith(b"HTTP/") else 400)
        self._set_busy(sock, True)
        started = time.monotonic()
        headers = Headers()
        raw_headers = []
        while True:
            line = _read_line(rfile, budget)
            budget -= len(line)
            if not line.endswith(b"\n"):
                raise HttpError(400)
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, _TOKEN):
                raise HttpError(400)  # includes obsolete line folding, which RFC 9112 lets us reject
            name = name.decode("latin-1").lower()
            value = value.strip(b" \t").decode("latin-1")
            raw_headers.append((name, value))
            previous = dict.get(headers, name)
            if previous is None:
                dict.__setitem__(headers, name, [value] if name == "set-cookie" else value)
            elif name == "content-length" and value != previous:
                raise HttpError(400)  # conflicting lengths: a smuggling attempt or a broken client
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
        req.then = None
        return req, close

    def _send(self, sock, status, head, body, keep_alive, head_only):
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Unknown").encode()), head]
        bodiless = status in (204, 304) or status < 200
        if not bodiless:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"date: " + self._http_date() + b"\r\n")
        lines.append(_KEEP_ALIVE if keep_alive else _CLOSE)
        if head_only or bodiless or not body:
            sock.sendall(b"".join(lines))
        elif len(body) < 65536:
            lines.append(body)
            sock.sendall(b"".join(lines))
        else:
            sock.sendall(b"".join(lines))
            sock.sendall(body)

    def _http_date(self):
        now = int(time.time())
        if self._date[0] != now:
            # Python never changes LC_TIME from "C", so day and month names are English.
            self._date = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode())
        return self._date[1]


class _Task:
    """A call handed to the main thread, and its outcome for the thread waiting on it."""

    __slots__ = ("_fn", "_done", "_value", "_error")

    def __init__(self, fn):
        self._fn = fn
        self._done = threading.Event()
        self._value = None
        self._error = None

    def run(self):
        try:
            self._value = self._fn()
        except BaseException as err:  # raised again in the waiting thread, whatever it is
            self._error = err
        self._done.set()

    def fail(self, err):
        self._error = err
        self._done.set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _read_line(rfile, budget):
    line = rfile.readline(budget + 1)
    if len(line) > budget:
        raise HttpError(431)
    return line


def _read_body(rfile, sock, version, headers):
    """The whole request body. The gateway bounds its size, so buffering it is safe."""
    te = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if te is None and length in (None, "0"):
        return b""
    if te is not None and length is not None:
        raise HttpError(400)  # as Node's parser: both framings at once invite request smuggling
    if te is not None and te.rsplit(",", 1)[-1].strip().lower() != "chunked":
        raise HttpError(400)
    if te is None and not (length.isascii() and length.isdigit()):
        raise HttpError(400)
    expect = headers.get("expect")
    if expect is not None and version == "HTTP/1.1":
        if expect.lower() != "100-continue":
            raise HttpError(417)
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if te is None:
        body = rfile.read(int(length))
        if len(body) != int(length):
            raise ConnectionError("the client closed the connection mid-body")
        return body
    chunks = []
    while True:
        size = _read_line(rfile, 1024).rstrip(b"\r\n").split(b";", 1)[0].strip()
        if not size or size.translate(None, _HEX):
            raise HttpError(400)
        size = int(size, 16)
        if size == 0:
            break
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise HttpError(400)
        chunks.append(chunk)
    while _read_line(rfile, MAX_HEAD_BYTES) not in (b"\r\n", b"\n", b""):
        pass  # trailers: ignored
    return b"".join(chunks)


def _remove_stale_socket(path):
    """A previous instance that was killed leaves its socket file behind, and bind() would fail on it."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass  # nothing there: nothing to remove
