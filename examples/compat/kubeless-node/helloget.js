// A Kubeless function as Kubeless' own examples write it: handler "helloget.foo".
module.exports = {
  foo: (_event, context) => {
    return `hello world from ${context["function-name"]} (timeout ${context.timeout}s, memory ${context["memory-limit"]})`;
  },
};
