// An ES module function: POST {"a":4,"b":5} to /mul → 20
export function main(event) {
  const { a, b } = event.data ?? {};
  if (typeof a !== "number" || typeof b !== "number") {
    return { statusCode: 400, body: { error: 'send JSON like {"a": 4, "b": 5}' } };
  }
  return a * b;
}
