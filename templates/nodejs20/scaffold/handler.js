/**
 * A funcd function. `main` is called once per request:
 * - event.data is the body (parsed JSON, a string for text, a Buffer for bytes), plus event.method,
 *   event.path, event.query and event.headers;
 * - context carries functionName, requestId and getRemainingTimeInMillis().
 * Return a string, an object (sent as JSON), or { statusCode, headers, body } for full control.
 */
module.exports = {
  main: async (event, context) => {
    const name = event.data?.name ?? event.query.name ?? "world";
    return { message: `Hello, ${name}!`, from: context.functionName };
  },
};
