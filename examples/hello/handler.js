// The smallest funcd function: GET /function/hello → "Hello, world!"
// Try: curl 'localhost:8080/function/hello?name=Ada'
module.exports = {
  main: async (event, context) => {
    const name = event.query?.name ?? (typeof event.data === "object" && event.data?.name) ?? "world";
    return `Hello, ${name}! (from ${context["function-name"]})\n`;
  },
};
