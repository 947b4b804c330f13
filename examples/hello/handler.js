// The smallest funcd function: GET /function/hello → "Hello, world!"
// Try: curl 'localhost:8080/function/hello?name=Ada'
module.exports = {
  main: async (event, context) => {
    const fromBody = event.data && typeof event.data === "object" ? event.data.name : undefined;
    const name = event.query?.name ?? fromBody ?? "world";
    return `Hello, ${name}! (from ${context["function-name"]})\n`;
  },
};
