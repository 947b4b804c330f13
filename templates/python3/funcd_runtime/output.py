"""Log tagging ("Logs" in docs/runtime-contract.md): sys.stdout and sys.stderr are replaced by streams
that prefix each line written during an invocation with `\x1e<request-id>\x1f`, so the driver can tag the
line with the request id."""

import contextvars
import io
import os
import select
import sys
import threading

#: The current invocation's log prefix (b"\x1e<request-id>\x1f"); None outside invocations. A context
#: variable, so it follows an invocation into its worker thread and its asyncio tasks.
PREFIX = contextvars.ContextVar("funcd_log_prefix", default=None)


def install():
    """Replace sys.stdout and sys.stderr. Called before the handler is imported, so the handler module and
    every logging handler it creates (logging.basicConfig() uses sys.stderr) write through them."""
    sys.stdout = TaggedStream(1, "<stdout>")
    sys.stderr = TaggedStream(2, "<stderr>")


def flush():
    sys.stdout.flush()
    sys.stderr.flush()


def log_prefix(request_id):
    """The tag for a request id. Control characters in the id would break the driver's line framing, so
    they never reach the prefix; and the driver only reads a tag that ends within 256 characters, so a
    long id is cut."""
    safe = "".join("?" if ord(c) < 0x20 or c == "\x7f" else c for c in request_id[:200])
    return b"\x1e" + safe.encode("utf-8", "backslashreplace") + b"\x1f"


class TaggedStream(io.TextIOBase):
    """A text stream writing to a file descriptor, tagging each line written during an invocation.

    A line left open by one writer is ended before another writer's output, so a tag always starts a
    line. Output reaches the file descriptor as soon as a write contains a newline (the driver reads
    pipes, where Python's own streams would hold output in a block buffer), or on flush().
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
        self.buffer = TaggedBuffer(self)

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.write_bytes(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def write_bytes(self, data):
        prefix = PREFIX.get()
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
            pass  # nobody reads the pipe any more: nothing useful can be done with the output
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


class TaggedBuffer:
    """`sys.stdout.buffer`: bytes written here are tagged like text written to the stream."""

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
