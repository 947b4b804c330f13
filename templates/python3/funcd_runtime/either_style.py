"""The style of a `handler` that may be Kubeless's or Lambda's ("Handler styles" in
docs/runtime-contract.md): both platforms name handlers `handler`, and nothing in `def handler(event,
context)` says which one it was written for. The event is a payload 2.0 event that is also a Kubeless
event, the context has both sets of names, and the result is read the Lambda way if the handler read a
field only a Lambda event has, else the Kubeless way. Imported only for such functions.
"""

from . import responses
from .kubeless import BadBody, Event, decode_body

# Event fields only a Lambda event has (payload 2.0's, and 1.0's a handler may look for).
LAMBDA_ONLY = frozenset(
    (
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "cookies",
        "queryStringParameters",
        "requestContext",
        "body",
        "isBase64Encoded",
        "pathParameters",
        "stageVariables",
        "httpMethod",
        "resource",
        "multiValueHeaders",
        "multiValueQueryStringParameters",
    )
)


class EitherEvent(Event):
    """Both events in one dict: Lambda's fields, then Kubeless's (its `headers` win). `extensions` is
    there for reading but not a stored key, so json.dumps(event) works (handlers log events so); `data`
    of a body that cannot be decoded raises BadBody when read (a 400). Reading a Lambda-only field, by
    key, get(), `in` or attribute, marks the event."""

    __slots__ = ("_extensions", "_bad", "lambda_read")

    def __getitem__(self, key):
        if key in LAMBDA_ONLY:
            object.__setattr__(self, "lambda_read", True)
        return dict.__getitem__(self, key)

    def __missing__(self, key):
        if key == "extensions":
            return self._extensions
        if key == "data" and self._bad is not None:
            raise BadBody(self._bad)
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key):
        if key in LAMBDA_ONLY:
            object.__setattr__(self, "lambda_read", True)
        return dict.__contains__(self, key) or key == "extensions" or (key == "data" and self._bad is not None)


class EitherStyle:
    """`prepare` and `shape`, as the other styles have them, over a Kubeless and a Lambda style."""

    def __init__(self, kubeless, lambda_style):
        self._kubeless = kubeless
        self._lambda = lambda_style

    def prepare(self, req):
        (lambda_event, lambda_context), _ = self._lambda.prepare(req)
        try:
            data, bad = decode_body(req.body, req.headers.get("content-type"), req.method), None
        except ValueError as err:
            data, bad = None, str(err)
        (kubeless_event, context), response = self._kubeless.build(req, data)
        extensions = kubeless_event.pop("extensions")
        if bad is not None:
            del kubeless_event["data"]
        event = EitherEvent(lambda_event)
        dict.update(event, kubeless_event)
        object.__setattr__(event, "_extensions", extensions)
        object.__setattr__(event, "_bad", bad)
        object.__setattr__(event, "lambda_read", False)
        # Kubeless's context (a dict whose keys read as attributes) with AWS's attributes added.
        for name, value in vars(lambda_context).items():
            if not name.startswith("_") and name not in context:
                context[name] = value
        return (event, context), (response, event)

    def shape(self, result, state):
        response, event = state
        lambda_shaped = isinstance(result, dict) and responses.is_int(result.get("statusCode")) and "cookies" in result
        if event.lambda_read or lambda_shaped:
            return self._lambda.shape(result, None)
        return self._kubeless.shape(result, response)
