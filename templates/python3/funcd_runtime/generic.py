"""Generic mode ("Generic mode / specialization" in docs/runtime-contract.md): with FUNCD_GENERIC=1 the
server boots for the warm pool with no function, answers `/healthz` with `{"status":"generic"}`, and
becomes an instance of a function once, on `POST /_funcd/specialize`: the environment becomes the
function's, the handler is loaded exactly as at a normal start (runtime.load_function, on the main
thread), and from then on every request goes to it. A handler that cannot be loaded is answered 422
`{error, logs}`, and the process exits as a failed start would (3; 1 for an invalid `FUNCD_*` value).
"""

# Imported at boot: the specialization's body is JSON, and importing json takes about 2.5 ms.
import json
import os
import sys
import threading
import time

from . import http1, runtime
from .responses import JSON_TYPE, problem

GENERIC = b'{"status":"generic"}'
SPECIALIZE_PATH = "/_funcd/specialize"
#: Where it listens, its runtime and its memory limit were settled at boot, whatever the body says.
BOOT_SETTINGS = ("FUNCD_LISTEN", "FUNCD_FUNCTION_DIR", "FUNCD_RUNTIME")
#: Put in the environment by what launched the process rather than by the driver (the shell, bwrap's
#: --chdir), for the working directory, which a specialization does not change: a normal start has it too.
LAUNCH_VARIABLES = ("PWD",)
#: The variables that decide the interpreter's locale, read only while it boots (template.yaml's bootEnv
#: lists them, so the driver never specializes a function that sets one).
LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LANG")


def main(config):
    """Boot generic: listen and serve with no function; `config` is the boot's."""
    # Imported now, while nobody waits, rather than by the first Lambda-style function specialized here
    # (about 0.3 ms of its cold start). Unlike Node's, this runtime rehearses no invocation before
    # listening: Python compiles nothing lazily (the package's bytecode is loaded whole at import), and
    # serving a throwaway invocation first was measured to change nothing (3.2 ms from specialization
    # to a first answer either way). The other modules the runtime imports on first use (traceback,
    # importlib.util, asyncio) stay out: they serve failures, rare handler names and async handlers, and
    # would make every pooled instance bigger than a normal start (asyncio alone: about 8 MB).
    from . import either_style, lambda_style  # noqa: F401

    generic = Generic(config)
    server = http1.Server(config.listen, generic.handle)
    generic.server = server
    runtime.serve(server, generic.timeout_ms)


class Generic:
    """The server's request handler while generic, and the specialization that ends that."""

    def __init__(self, config):
        self._config = config
        #: The environment as the interpreter booted with it.
        self._boot_env = dict(os.environ)
        self._lock = threading.Lock()
        #: True from the first accepted specialization on: there is only ever one.
        self._specializing = False
        #: The function's Invoker, once specialized: from then on it answers everything.
        self._invoker = None
        self.server = None

    def timeout_ms(self):
        """The function's timeout once specialized (it bounds draining), the default before."""
        return self._config.timeout_ms

    def handle(self, req):
        """The http1.Server callback: the function's once specialized; until then only /healthz,
        /metrics and the one specialization. The gateway never routes to a generic instance, so anything
        else is a mistake."""
        invoker = self._invoker
        if invoker is not None:
            return invoker.handle(req)
        daemon = req.headers.get("x-funcd-invoke") != "1"
        own = daemon and req.search == ""
        if own and req.method == "GET" and req.path == "/healthz":
            return 200, http1.encode_headers([("content-type", JSON_TYPE)]), GENERIC
        if own and req.method == "GET" and req.path == "/metrics":
            lines = [("content-type", runtime.METRICS_TYPE)]
            return 200, http1.encode_headers(lines), runtime.Metrics(self._config.function_name).render()
        if own and req.method == "POST" and req.path == SPECIALIZE_PATH:
            with self._lock:
                accepted = not self._specializing
                self._specializing = True
            if accepted:
                return self._specialize(req)
        detail = (
            "This instance is being specialized"
            if self._specializing
            else "This is a generic instance: no function is loaded yet"
        )
        title = "Not specialized"
        return _answer(problem(503, "function-unavailable", "FUNCTION_UNAVAILABLE", title, detail))

    def _specialize(self, req):
        """`POST /_funcd/specialize`: 200 `{"status":"ready"}` once the function is loaded; 400 for a body
        that is not a specialization for this instance (it stays generic); 422 `{error, logs}` for a
        handler that cannot be loaded, after which the process exits."""
        # As Node's runtime: the daemon's client is done with the connection after this answer.
        req.then = _nothing
        try:
            body = _specialization(req.body, self._config.memory_limit_mb)
        except ValueError as err:
            # Nothing was changed: the instance stays generic and may still be specialized.
            with self._lock:
                self._specializing = False
            return _answer(problem(400, "bad-request", "BAD_REQUEST", "Bad request", str(err)))
        env = self._function_env(body)
        try:
            self.server.in_main_thread(lambda: self._become(env))
        except runtime.ConfigError as err:
            return self._failed(req, 1, str(err), err.output())
        except runtime.LoadError as err:
            return self._failed(req, 3, err.message, err.output())
        except Exception as err:  # a bug here, or the server stopping: it cannot serve all the same
            message = f"Cannot specialize: {type(err).__name__}: {err}"
            return self._failed(req, 3, message, f"funcd: {message}\n")
        return 200, http1.encode_headers([("content-type", JSON_TYPE)]), runtime.READY

    def _function_env(self, body):
        """The environment a normal start of the function would have had: its env and the contract
        variables from the body, with what was settled at boot."""
        env = {str(name): _text(value) for name, value in body["env"].items() if value is not None}
        env["FUNCD_HANDLER"] = body["handler"]
        for variable, key in (
            ("FUNCD_HANDLER_STYLE", "handlerStyle"),
            ("FUNCD_FUNCTION_NAME", "functionName"),
            ("FUNCD_REVISION", "revision"),
        ):
            if isinstance(body.get(key), str):
                env[variable] = body[key]
        if "timeoutMs" in body:
            env["FUNCD_TIMEOUT_MS"] = _text(body["timeoutMs"])
        for variable in BOOT_SETTINGS:
            env[variable] = self._boot_env.get(variable, "")
        for variable in LAUNCH_VARIABLES:
            if variable in self._boot_env:
                env[variable] = self._boot_env[variable]
        env["FUNCD_MEMORY_LIMIT_MB"] = str(self._config.memory_limit_mb)
        env.pop("FUNCD_GENERIC", None)
        # The interpreter runs with the locale it booted with. Python itself may have put LC_CTYPE in
        # the environment then (PEP 538 turns the C locale into C.UTF-8), as it does at a normal start.
        if not any(variable in env for variable in LOCALE_VARIABLES):
            for variable in LOCALE_VARIABLES:
                if variable in self._boot_env:
                    env[variable] = self._boot_env[variable]
        return env

    def _become(self, env):
        """The function's environment, configuration and handler, as a normal start would load them; on
        the main thread, where a normal start imports the handler. Raises ConfigError or LoadError."""
        os.environ.clear()
        os.environ.update(env)
        # time.tzname and time.timezone were computed at boot: a TZ of the function's applies from here.
        time.tzset()
        config = runtime.read_config(os.environ)
        fn, style = runtime.load_function(config)
        invoker = runtime.Invoker(config, fn, style)
        self._config = config
        self._invoker = invoker

    def _failed(self, req, code, error, text):
        """The 422 of a failed specialization; the process exits with `code` once it is sent. The same
        output goes to stderr as at a failed start, so the driver's logs of the failure read the same."""
        sys.stderr.write(text)
        req.then = lambda: runtime.exit_now(code)
        answer = {"error": error, "logs": text.rstrip("\n").split("\n")}
        body = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
        return 422, http1.encode_headers([("content-type", JSON_TYPE)]), body


def _specialization(raw, memory_limit_mb):
    """The body of `POST /_funcd/specialize`, checked; ValueError says what is wrong with it."""
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"the body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    if not isinstance(body.get("handler"), str) or body["handler"] == "":
        raise ValueError('"handler" is missing')
    if not isinstance(body.get("env"), dict):
        raise ValueError('"env" is not an object')
    if "memoryMb" in body and _number(body["memoryMb"]) != memory_limit_mb:
        # The sandbox and its limit were set up at boot; a different limit needs a normal start.
        raise ValueError(f"This instance runs with {memory_limit_mb} MiB, not {_text(body['memoryMb'])} MiB")
    return body


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _text(value):
    """A JSON value as an environment variable's text, as JavaScript's String() writes it."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _answer(answer):
    status, lines, body = answer
    return status, http1.encode_headers(lines), body


def _nothing():
    pass
