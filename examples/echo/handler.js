// Answers with the event it received (everything but the raw request/response objects),
// which makes it handy for seeing what a function gets: curl -d 'hi' localhost:8080/function/echo/any/path?x=1
module.exports = {
  main: (event, context) => {
    const { extensions, ...rest } = event;
    return {
      event: {
        ...rest,
        data: Buffer.isBuffer(rest.data) ? { base64: rest.data.toString("base64") } : rest.data,
      },
      context: {
        functionName: context["function-name"],
        runtime: context.runtime,
        timeout: context.timeout,
        memoryLimit: context["memory-limit"],
        requestId: context.requestId,
      },
    };
  },
};
