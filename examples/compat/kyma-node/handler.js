// A Kyma Serverless function: main(event, context) with full HTTP control through
// event.extensions.response — this one streams its answer in three chunks.
module.exports = {
  main: async (event) => {
    const res = event.extensions.response;
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    for (const word of ["streamed ", "by ", "kyma-node\n"]) {
      res.write(word);
      await new Promise((r) => setTimeout(r, 10));
    }
    res.end();
  },
};
