"""The runtime: configuration from FUNCD_* variables, loading the handler, invocations (a worker thread
each, an event loop for coroutines, timeouts), metrics, and main()."""

import collections
import contextvars
import os
import sys
import threading
import time

from . import http1, output, responses
from .kubeless import BadBody, KubelessStyle
from .responses import JSON_TYPE

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READY = b'{"status":"ready"}'
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ConfigError(Exception):
    """A `FUNCD_*` setting is invalid: fatal with exit code 1. `problems` names each one."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems

    def output(self):
        """What a start that fails this way writes to stderr, one line per problem."""
        return "".join(f"funcd: {problem}\n" for problem in self.problems)


class LoadError(Exception):
    """The handler cannot be loaded: fatal with exit code 3 (the driver reports a failed deploy with the
    output). `cause` is the exception the import raised, if any."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.message = message
        self.cause = cause

    def output(self):
        """What a start that fails this way writes to stderr: the message, then the traceback."""
        return f"funcd: {self.message}\n{'' if self.cause is None else format_error(self.cause)}"


Config = collections.namedtuple(
    "Config",
    "function_dir handler function_name revision runtime timeout_ms memory_limit_mb style listen",
)


def read_config(env):
    """The contract's variables, with their defaults; ConfigError naming every invalid one."""
    problems = []

    def positive_int(name, fallback):
        raw = env.get(name, "")
        if raw == "":
            return fallback
        if raw.isascii() and raw.isdigit() and int(raw) > 0:
            return int(raw)
        problems.append(f'{name} "{raw}" is not a positive integer')
        return fallback

    function_dir = os.path.abspath(env.get("FUNCD_FUNCTION_DIR") or ".")
    timeout_ms = positive_int("FUNCD_TIMEOUT_MS", 30_000)
    memory_limit_mb = positive_int("FUNCD_MEMORY_LIMIT_MB", 256)
    style = env.get("FUNCD_HANDLER_STYLE") or "auto"
    if style not in ("auto", "kubeless", "lambda"):
        problems.append(f'FUNCD_HANDLER_STYLE "{style}" is not one of auto, kubeless, lambda')
    listen_text = env.get("FUNCD_LISTEN") or "8080"
    listen = http1.parse_listen(listen_text)
    if listen is None:
        problems.append(f'FUNCD_LISTEN "{listen_text}" is not a socket path, port or host:port')
    config = Config(
        function_dir=function_dir,
        handler=env.get("FUNCD_HANDLER") or "handler.main",
        function_name=env.get("FUNCD_FUNCTION_NAME") or os.path.basename(function_dir),
        revision=env.get("FUNCD_REVISION", ""),
        runtime=env.get("FUNCD_RUNTIME") or "python3",
        timeout_ms=timeout_ms,
        memory_limit_mb=memory_limit_mb,
        style=style,
        listen=listen,
    )
    if problems:
        raise ConfigError(problems)
    return config


# ---------------------------------------------------------------------------------------------------
# Loading the handler.


def load_function(config):
    """Everything a start does between reading its configuration and listening: the function's folder
    and its dependencies on sys.path, the handler imported, its style decided (once, here, never per
    request). Returns (handler, style); LoadError when the handler cannot be loaded. Runs on the main
    thread, at boot or at specialization (see generic.py)."""
    # The function's folder, then its dependencies (`pip install --target .python_packages`), come
    # before everything else, so they win over same-named system packages.
    _guard_against_shadowing(config.function_dir)
    packages = os.path.join(config.function_dir, ".python_packages")
    sys.path[:0] = [config.function_dir, packages] if os.path.isdir(packages) else [config.function_dir]
    # The function's folder is read-only in the sandbox, and a deploy should not change it anyway.
    sys.dont_write_bytecode = True

    fn, name, also_main = load_handler(config)
    kubeless = KubelessStyle(
        function_name=config.function_name,
        runtime=config.runtime,
        revision=config.revision,
        timeout_ms=config.timeout_ms,
        memory_limit_mb=config.memory_limit_mb,
    )
    # Lambda and Kubeless both name handlers `handler`: in the auto style such a handler gets an event
    # that is both (either_style.py).
    either = config.style == "auto" and name == "handler" and not also_main
    if config.style != "lambda" and not either:
        return fn, kubeless
    # Imported only here, so Kubeless functions never load them; their bytecode may be cached, unlike the
    # function's.
    sys.dont_write_bytecode = False
    from .lambda_style import LambdaStyle

    if either:
        from .either_style import EitherStyle
    sys.dont_write_bytecode = True
    style = LambdaStyle(
        function_name=config.function_name,
        revision=config.revision,
        memory_limit_mb=config.memory_limit_mb,
    )
    return fn, EitherStyle(kubeless, style) if either else style


def load_handler(config):
    """Import the handler's file and find its function: (function, its name, whether it is also the
    module's `main`). Any failure raises LoadError."""
    handler = config.handler
    dot = handler.rfind(".")
    if dot <= 0 or dot == len(handler) - 1:
        raise LoadError(
            f'FUNCD_HANDLER "{handler}" is not of the form file.function (for example handler.main)'
        )
    file, name = handler[:dot], handler[dot + 1 :]
    candidates = [f"{file}.py"]
    if file.endswith(".py"):
        candidates.append(file)  # "handler.py.main" names the file with its extension
    elif "." in file:
        candidates.append(file.replace(".", "/") + ".py")  # "lib.fn.main", dotted like a module
    found = next((c for c in candidates if os.path.isfile(os.path.join(config.function_dir, c))), None)
    if found is None:
        listed = ", ".join(candidates)
        raise LoadError(f'Cannot load handler "{handler}": none of {listed} exists in {config.function_dir}')
    path = os.path.join(config.function_dir, found)
    try:
        module = _import_file(path, found[:-3].split("/"))
    except BaseException as err:
        hint = ""
        if isinstance(err, ModuleNotFoundError):
            hint = " (a dependency? list it in requirements.txt; funcd installs it in .python_packages)"
        raise LoadError(f'Cannot load handler "{handler}": importing {path} failed{hint}', err) from None
    fn = getattr(module, name, None)
    if callable(fn):
        # Whether the same function is also the module's `main`, which keeps `handler` Kubeless (auto).
        return fn, name, getattr(module, "main", None) is fn
    what = "is missing" if not hasattr(module, name) else f"is not callable (it is a {type(fn).__name__})"
    names = sorted(
        key
        for key, value in vars(module).items()
        if not key.startswith("_") and callable(value) and not isinstance(value, type(sys))
    )
    hint = f" (to call one, deploy with --handler {file}.{names[0]})" if names else ""
    raise LoadError(
        f'Cannot load handler "{handler}": the function "{name}" of {path} {what}; '
        f"its callables are: {', '.join(names) or '(none)'}{hint}"
    )


def _import_file(path, parts):
    """Import the handler file under its module name (lib/fn.py as lib.fn, so relative imports and
    `import handler` elsewhere see the same module); fall back to loading the file directly, under a
    name of its own, when that name is not importable or belongs to another module: a handler called
    json.py must not become the `json` the runtime (and every library) imports."""
    name = ".".join(parts)
    if (
        all(part.isidentifier() for part in parts)
        and name not in sys.modules
        and parts[0] not in sys.stdlib_module_names
    ):
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
    """How many of (event, context) `fn` takes (like a JavaScript function, a handler may declare fewer),
    and whether it is a coroutine function."""
    target, bound = fn, 0
    if hasattr(fn, "__func__"):
        target, bound = fn.__func__, 1
    code = getattr(target, "__code__", None)
    if code is None or code.co_flags & 0x04:  # not plain Python, or *args
        return 2, False
    return min(2, max(0, code.co_argcount - bound)), bool(code.co_flags & 0x80)  # CO_COROUTINE


def exit_now(code, message=""):
    """Exit at once. os._exit, because a handler thread may be stuck for good and interpreter shutdown
    would wait for it."""
    if message:
        sys.stderr.write(message)
    output.flush()
    os._exit(code)


# ---------------------------------------------------------------------------------------------------
# Invocations.


class _Call:
    """One call of the handler, filled in by its worker thread."""

    __slots__ = ("result", "error", "finished", "timed_out")

    def __init__(self):
        self.result = None
        self.error = None
        self.finished = False
        self.timed_out = False


class Invoker:
    """Answers requests: the server's own /healthz and /metrics, and invocations of the handler."""

    def __init__(self, config, fn, style):
        self._config = config
        self._fn = fn
        self._arity, self._is_async = _call_shape(fn)
        self._style = style
        self._metrics = Metrics(config.function_name)
        self._timeout_s = config.timeout_ms / 1000
        if self._is_async:
            _event_loop()  # import asyncio now rather than in the first invocation

    def handle(self, req):
        """The http1.Server callback: (status, encoded headers, body)."""
        headers = req.headers
        given_id = headers.get("x-request-id")
        # The gateway always marks invocations, so a function can serve /healthz and /metrics itself.
        own = req.method == "GET" and headers.get("x-funcd-invoke") != "1"
        if own and req.path in ("/healthz", "/metrics"):
            lines = [] if given_id is None else [("x-request-id", given_id)]
            if req.path == "/healthz":
                lines.append(("content-type", JSON_TYPE))
                return 200, http1.encode_headers(lines), READY
            lines.append(("content-type", METRICS_TYPE))
            return 200, http1.encode_headers(lines), self._metrics.render()
        req.request_id = given_id or _uuid4()
        req.deadline = req.started + self._timeout_s
        token = output.PREFIX.set(output.log_prefix(req.request_id))
        try:
            try:
                status, lines, body, counted = self._invoke(req)
                if not any(name == "x-request-id" for name, _ in lines):  # unless the handler set its own
                    lines.insert(0, ("x-request-id", req.request_id))
                head = http1.encode_headers(lines)
            except Exception as err:  # a header that cannot be sent, or a bug here: the 500 still goes out
                report(self._config.function_name, err)
                status, lines, body = responses.function_error(err)
                head = http1.encode_headers([("x-request-id", req.request_id), *lines])
                counted = True
            if counted:
                # From receiving the request to the answer; the server writes it right after.
                self._metrics.record(time.monotonic() - req.started, status >= 500 or status == 408)
            return status, head, body
        finally:
            output.PREFIX.reset(token)

    def _invoke(self, req):
        """(status, header lines, body, counted): counted is False when the handler never ran (a body
        that cannot be decoded)."""
        try:
            args, response = self._style.prepare(req)
        except ValueError as err:
            return (*responses.problem(400, "bad-request", "BAD_REQUEST", "Bad request", str(err)), False)
        call = _Call()
        # The worker runs in a copy of this thread's context, so the handler's output is tagged.
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run, call, args[: self._arity]), daemon=True
        )
        worker.start()
        worker.join(max(0.0, req.deadline - time.monotonic()))
        if not call.finished:
            # A thread cannot be stopped, and (as in Node) a coroutine is not cancelled: the handler is
            # abandoned, its late result dropped, and the gateway replaces the instance.
            call.timed_out = True
            name, timeout_ms = self._config.function_name, self._config.timeout_ms
            detail = f'Function "{name}" did not finish within its timeout of {timeout_ms} ms'
            status, lines, body = responses.problem(
                408, "function-timeout", "FUNCTION_TIMEOUT", "Function timed out", detail
            )
            return status, [*lines, ("x-funcd-recycle", "1")], body, True
        if isinstance(call.error, BadBody):  # the handler read event["data"] of a body that cannot be decoded
            return (*responses.problem(400, "bad-request", "BAD_REQUEST", "Bad request", str(call.error)), True)
        if call.error is None:
            try:
                return (*self._style.shape(call.result, response), True)
            except Exception as err:  # an unsendable result is the function's failure
                call.error = err
                report(self._config.function_name, err)
        return (*responses.function_error(call.error), True)

    def _run(self, call, args):
        """The worker thread: call the handler, and await what it returns when that is awaitable."""
        try:
            result = self._fn(*args)
            if hasattr(result, "__await__"):
                result = _await(result)
            call.result = result
        except BaseException as err:  # whatever the handler raises is its failure, SystemExit included
            call.error = err
            # Past the timeout the 408 has been sent; as in Node, a late failure is not reported. A body
            # that cannot be decoded is the client's mistake, not the function's failure.
            if not call.timed_out and not isinstance(err, BadBody):
                report(self._config.function_name, err)
        call.finished = True


_loop = None
_loop_lock = threading.Lock()


def _event_loop():
    """The one event loop every coroutine handler runs on, in its own thread, so that clients created at
    module level (an aiohttp session, say) stay bound to one loop. Started on first use."""
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


def report(function_name, err):
    """The failure and its traceback to stderr (tagged: called while the invocation's prefix is set)."""
    sys.stderr.write(f'funcd: function "{function_name}" failed:\n{format_error(err)}')


def format_error(err):
    """The traceback without its leading frames from this package and the standard library (the worker
    thread, futures, importlib), which say nothing about the function's code."""
    import traceback

    stdlib = os.path.dirname(os.__file__)
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith((PACKAGE_DIR, stdlib, "<frozen ")):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb))


def _uuid4():
    """A random UUID, without importing uuid (which costs more than the rest of a request)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------------------------------------------
# Metrics.


class Metrics:
    """The counters and histogram of /metrics (see "HTTP" in the contract)."""

    def __init__(self, function_name):
        name = function_name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        self._label = f'function="{name}"'
        self._lock = threading.Lock()
        self._calls = 0
        self._failures = 0
        self._sum = 0.0
        self._buckets = [0] * (len(BUCKETS) + 1)

    def record(self, seconds, failed):
        i = 0
        while i < len(BUCKETS) and seconds > BUCKETS[i]:
            i += 1
        with self._lock:
            self._calls += 1
            self._failures += failed
            self._sum += seconds
            self._buckets[i] += 1

    def render(self):
        """Prometheus text exposition, written by hand (no client library in the sandbox)."""
        label = self._label
        with self._lock:
            calls, failures, total, buckets = self._calls, self._failures, self._sum, list(self._buckets)
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
        for le, count in zip((*map(str, BUCKETS), "+Inf"), buckets):
            cumulative += count
            out.append(f'function_duration_seconds_bucket{{{label},le="{le}"}} {cumulative}\n')
        total_text = repr(total)
        out.append(f"function_duration_seconds_sum{{{label}}} {total_text.removesuffix('.0')}\n")
        out.append(f"function_duration_seconds_count{{{label}}} {calls}\n")
        return "".join(out).encode()


# ---------------------------------------------------------------------------------------------------
# main.


def _guard_against_shadowing(function_dir):
    """A file such as json.py in the function's folder hides the standard library's module from every
    import that follows, the runtime's own imports-on-first-use included. When there is one, say so, and
    import what the runtime needs later now, while it still finds the standard library's."""
    try:
        entries = os.listdir(function_dir)
    except OSError:
        return
    shadows = sorted(
        entry
        for entry in entries
        if entry.removesuffix(".py") in sys.stdlib_module_names
        and (entry.endswith(".py") or os.path.isdir(os.path.join(function_dir, entry)))
    )
    if shadows:
        # Not used here: imported now for later, see above.
        import importlib.util
        import json
        import traceback

        one = len(shadows) == 1
        sys.stderr.write(
            f"funcd: warning: {', '.join(shadows)} in {function_dir} shadow{'s' if one else ''} the standard "
            f"library's module{'' if one else 's'} of the same name for the function's own imports\n"
        )


def main():
    output.install()
    try:
        config = read_config(os.environ)
    except ConfigError as err:
        exit_now(1, err.output())
    # The runtime's own folder (sys.path[0], server.py's) is not the function's business.
    runtime_dir = os.path.dirname(PACKAGE_DIR)
    if sys.path and os.path.abspath(sys.path[0] or ".") == runtime_dir:
        del sys.path[0]
    if os.environ.get("FUNCD_GENERIC") == "1":
        from . import generic

        generic.main(config)
        return
    try:
        fn, style = load_function(config)
    except LoadError as err:
        exit_now(3, err.output())
    serve(http1.Server(config.listen, Invoker(config, fn, style).handle), lambda: config.timeout_ms)


def serve(server, timeout_ms):
    """Listen, serve until SIGTERM or SIGINT, drain, exit 0. `timeout_ms()` bounds the drain: no
    invocation may legitimately run longer (the driver's SIGKILL is the backstop anyway)."""
    try:
        server.listen()
    except OSError as err:
        exit_now(1, f"funcd: cannot listen on {os.environ.get('FUNCD_LISTEN') or '8080'}: {err}\n")
    server.serve()
    server.drain(timeout_ms() / 1000 + 1)
    exit_now(0)
