"""The Lambda handler style of funcd's Python runtime ("Lambda style" in docs/runtime-contract.md): a
request becomes an API Gateway HTTP API / Lambda Function URL payload format 2.0 event, the context is
AWS's Python context object, and the handler's result is read the way format 2.0 reads it. The runtime
imports this module only for functions in the Lambda style.
"""

import binascii
import os
import time

from . import responses
from .http1 import Headers
from .kubeless import unquote

_TEXT_TYPES = frozenset(
    ("application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")
)


class LambdaContext:
    """AWS's Python context: attributes with snake_case names, and get_remaining_time_in_millis(). A
    plain object, as AWS's is, so middleware may hang its own attributes on it."""

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self):
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


class LambdaStyle:
    """The two steps the runtime runs per invocation, bound to one function: `prepare` turns the request
    into the handler's arguments (it never raises: the body is passed on, not parsed), `shape` turns the
    handler's result into (status, headers, body)."""

    def __init__(self, *, function_name, revision, memory_limit_mb):
        self._function_name = function_name
        self._version = revision or "$LATEST"
        self._arn = f"arn:funcd:lambda:local:000000000000:function:{function_name}"
        self._memory = str(memory_limit_mb)  # a string, as AWS has it
        self._log_group = f"/funcd/functions/{function_name}"
        # AWS's shape, `YYYY/MM/DD/[version]<instance id>`: one stream per instance.
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self._log_stream = f"{day}/[{self._version}]{os.urandom(16).hex()}"

    def prepare(self, req):
        now = time.time()
        merged = req.headers
        headers = {}
        # Repeated headers joined with ","; cookies travel in `cookies` instead, as in AWS's events.
        for name, value in req.raw_headers:
            if name != "cookie":
                previous = headers.get(name)
                headers[name] = value if previous is None else f"{previous},{value}"
        host = merged.get("host") or "localhost"
        forwarded = merged.get("x-forwarded-for")
        # Built in AWS's field order; `cookies`, `queryStringParameters` and `body` are left out when the
        # request has none, as AWS does.
        event = {"version": "2.0", "routeKey": "$default", "rawPath": req.path, "rawQueryString": req.search}
        cookie = merged.get("cookie")
        if cookie:
            event["cookies"] = [part.strip() for part in cookie.split(";") if part.strip()]
        event["headers"] = headers
        if req.search:
            event["queryStringParameters"] = _query_parameters(req.search)
        event["requestContext"] = {
            "accountId": "funcd",
            "apiId": self._function_name,
            "domainName": host,
            "domainPrefix": host.replace(":", ".").split(".", 1)[0],
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": req.version,
                "sourceIp": forwarded.split(",", 1)[0].strip() if forwarded else req.peer,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": req.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        }
        body = req.body
        binary = bool(body) and not _is_text(merged.get("content-type"))
        if body:
            text = binascii.b2a_base64(body, newline=False) if binary else body
            event["body"] = text.decode("utf-8", "replace")
        event["isBase64Encoded"] = binary

        context = LambdaContext()
        context.function_name = self._function_name
        context.function_version = self._version
        context.invoked_function_arn = self._arn
        context.memory_limit_in_mb = self._memory
        context.aws_request_id = req.request_id
        context.log_group_name = self._log_group
        context.log_stream_name = self._log_stream
        context.identity = None
        context.client_context = None
        context._deadline = req.deadline
        return (event, context), None

    def shape(self, result, _response):
        """Format 2.0: a dict with an int statusCode describes the response (its `cookies` become
        set-cookie headers); anything else is a 200 application/json whose body is the value as JSON,
        except that a str is the body as it is."""
        if result is None:
            return responses.shaped(200, Headers(), None, False)
        status = result.get("statusCode") if isinstance(result, dict) else None
        if responses.is_int(status):
            headers = Headers()
            if isinstance(result.get("headers"), dict):
                headers.update(result["headers"])
            cookies = result.get("cookies")
            if isinstance(cookies, list) and cookies:
                given = headers.pop("set-cookie", None)
                given = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
                headers["set-cookie"] = given + [str(cookie) for cookie in cookies]
            is_base64 = result.get("isBase64Encoded") is True
            return responses.shaped(status, headers, result.get("body"), is_base64)
        body = result if isinstance(result, str) else responses.to_json(result)
        return responses.shaped(200, Headers({"content-type": "application/json"}), body, False)


def _query_parameters(search):
    """Decoded parameters; a repeated key's values joined with ",", as format 2.0 does."""
    query = {}
    for pair in search.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            key, value = unquote(key), unquote(value)
            query[key] = f"{query[key]},{value}" if key in query else value
    return query


def _is_text(content_type):
    """Whether a request body of this content type reaches the handler as text rather than base64."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))
