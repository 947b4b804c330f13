/**
 * OpenFaaS handlers have their own shapes (`module.exports = async (event, context) => …` with
 * `context.status().succeed()`, Python's `handle(req)` or `handle(event, context)`). Rather than change a
 * runtime, apply adds one small file beside the user's unchanged handler that adapts funcd's
 * `main(event, context)` call to the template's shape; the spec's handler points at it.
 */
import type { OpenfaasStyle } from "./runtimes.js";

const NODE_SHIM = `// Added by funcd apply: calls an OpenFaaS Node handler (handler.js, unchanged) from funcd's runtime.
"use strict";
const loaded = require("./handler");
const handler = typeof loaded === "function" ? loaded : loaded && (loaded.handler || loaded.default);
const STYLE = __STYLE__;

function answer(status, headers, body) {
  if (body !== undefined && body !== null && typeof body !== "string" && !Buffer.isBuffer(body)) {
    return { statusCode: status, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
  }
  return { statusCode: status, headers, body: body === undefined || body === null ? "" : body };
}

module.exports.main = async (event) => {
  if (typeof handler !== "function") throw new Error("handler.js exports no function");
  if (STYLE === "node-classic") {
    // The classic template: (context, callback) with the body as text.
    const input = typeof event.data === "string" ? event.data : Buffer.isBuffer(event.data) ? event.data.toString("utf8") : event.data === undefined ? "" : JSON.stringify(event.data);
    const result = await new Promise((resolve, reject) => {
      const done = (err, value) => (err ? reject(err) : resolve(value));
      const returned = handler(input, done);
      if (returned && typeof returned.then === "function") returned.then(resolve, reject);
    });
    return answer(200, {}, result);
  }
  const state = { status: 200, headers: {}, body: undefined, failed: undefined };
  const context = {
    status(code) { if (code === undefined) return state.status; state.status = code; return context; },
    headers(value) { if (value === undefined) return state.headers; state.headers = value; return context; },
    succeed(value) { state.body = value; return context; },
    fail(value) { state.status = 500; state.failed = value; return context; },
  };
  const ofEvent = {
    body: event.data,
    headers: event.headers,
    method: event.method,
    query: event.query,
    path: event.path,
  };
  const returned = await handler(ofEvent, context);
  if (state.failed !== undefined) return answer(500, state.headers, String(state.failed));
  return answer(state.status, state.headers, returned !== undefined && returned !== context ? returned : state.body);
};
`;

const PYTHON_SHIM = `# Added by funcd apply: calls an OpenFaaS Python handler (handler.py, unchanged) from funcd's runtime.
import importlib.util
import json
import os

_spec = importlib.util.spec_from_file_location(
    "handler", os.path.join(os.path.dirname(os.path.abspath(__file__)), "handler.py")
)
_handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_handler)
_STYLE = __STYLE__


def _raw(event):
    request = event["extensions"]["request"]
    return request.body.getvalue()


class _Event:
    """The python3-http template's event: body (bytes), headers, method, query, path."""

    def __init__(self, event):
        self.body = _raw(event)
        self.headers = event["headers"]
        self.method = event["method"]
        self.query = event["query"]
        self.path = event["path"]


def main(event, context):
    if _STYLE == "python-classic":
        body = _raw(event).decode("utf-8", errors="replace")
        return _handler.handle(body)
    result = _handler.handle(_Event(event), context)
    if isinstance(result, dict) and ("statusCode" in result or "body" in result):
        body = result.get("body", "")
        headers = result.get("headers") or {}
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
            headers = {"content-type": "application/json", **headers}
        return {"statusCode": int(result.get("statusCode", 200)), "headers": headers, "body": body}
    return result
`;

/** The shim's file name and content, and the spec handler that calls it. */
export function openfaasShim(style: OpenfaasStyle): { file: string; content: string; handler: string } {
  if (style.startsWith("node")) {
    return {
      file: "_funcd_openfaas.cjs",
      content: NODE_SHIM.replace("__STYLE__", JSON.stringify(style)),
      handler: "_funcd_openfaas.main",
    };
  }
  return {
    file: "funcd_openfaas.py",
    content: PYTHON_SHIM.replace("__STYLE__", JSON.stringify(style)),
    handler: "funcd_openfaas.main",
  };
}
