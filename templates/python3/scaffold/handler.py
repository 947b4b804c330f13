"""The funcd function {{name}}. `main` is called once per request:

- event["data"] is the body (parsed JSON, a str for text, bytes otherwise), plus event["method"],
  event["path"], event["query"] and event["headers"]; event.data works too;
- context carries function_name, request_id and get_remaining_time_in_millis().

Return a str, a dict or list (sent as JSON), a (body, status) tuple, or
{"statusCode": ..., "headers": {...}, "body": ...} for full control. `async def main` works too.
print() output is logged with the request's id.
"""


def main(event, context):
    data = event["data"] if isinstance(event["data"], dict) else {}
    name = data.get("name") or event["query"].get("name") or "world"
    return {"message": f"Hello, {name}!", "from": context.function_name}
