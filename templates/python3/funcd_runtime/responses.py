"""Handler results and failures as HTTP responses: (status, [(name, value), ...], body bytes). Shared by
both handler styles and by the server's own problem answers."""

PROBLEM_BASE = "https://funcd.dev/errors#"
TEXT = "text/plain; charset=utf-8"
BYTES = "application/octet-stream"
JSON_TYPE = "application/json"
PROBLEM = "application/problem+json"

#: Set by the server from the body it sends; a handler's value would contradict it.
FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))


def problem(status, slug, code, title, detail):
    """An application/problem+json answer, as Node's runtime and the API write them."""
    import json

    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, "code": code}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return status, [("content-type", PROBLEM)], text.encode()


def function_error(err):
    """The 500 for an exception: its type and message, never its traceback."""
    detail = f"{type(err).__name__}: {err}"
    return problem(500, "function-error", "FUNCTION_ERROR", "The function threw an error", detail)


def shaped(status, headers, body, is_base64):
    """`{statusCode, headers, body, isBase64Encoded}`, the Lambda/OpenFaaS shape (and Python's tuples).
    `headers` is a http1.Headers; without a content-type there, the body's type decides it."""
    status = check_status(int(status))
    # 204 and 304 carry no body, so no content-type describing one either.
    if body is None or status in (204, 304):
        return finish(status, headers, None, b"")
    if isinstance(body, str):
        if is_base64:
            import binascii

            # As lenient as Node's Buffer.from(text, "base64"): URL-safe letters and missing padding pass.
            text = body.strip().replace("-", "+").replace("_", "/")
            return finish(status, headers, BYTES, binascii.a2b_base64(text + "=" * (-len(text) % 4)))
        return finish(status, headers, TEXT, body.encode())
    if isinstance(body, (bytes, bytearray, memoryview)):
        return finish(status, headers, BYTES, bytes(body))
    return finish(status, headers, JSON_TYPE, to_json(body))


def finish(status, headers, default_type, body):
    """The response, with `default_type` as content-type unless the headers name one. A list value sends
    its header once per item; None leaves the header out."""
    if default_type is not None and "content-type" not in headers:
        headers["content-type"] = default_type
    lines = []
    for name, value in headers.items():
        if name in FRAMING_HEADERS or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            lines.append((name, "true" if item is True else "false" if item is False else str(item)))
    return check_status(status), lines, body


def check_status(status):
    if not 100 <= status <= 999:
        raise ValueError(f"Invalid status code: {status}")
    return status


def is_int(value):
    """An int that is not a bool (True is an int in Python, and no status code)."""
    return isinstance(value, int) and not isinstance(value, bool)


def to_json(value):
    """Compact JSON, as JSON.stringify writes it; NaN and infinities are refused rather than sent as
    invalid JSON."""
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
