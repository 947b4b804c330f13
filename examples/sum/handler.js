// POST {"a":2,"b":3} to /sum → 5
function numbers(data) {
  const { a, b } = data ?? {};
  if (typeof a !== "number" || typeof b !== "number") return undefined;
  return [a, b];
}

module.exports = {
  main: (event) => {
    const pair = numbers(event.data);
    if (!pair) return { statusCode: 400, body: { error: 'send JSON like {"a": 2, "b": 3}' } };
    return pair[0] + pair[1];
  },
};
