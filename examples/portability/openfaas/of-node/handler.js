// An OpenFaaS node20 (of-watchdog) handler, unchanged.
module.exports = async (event, context) => {
  const name = event.body?.name || "world";
  return context
    .status(200)
    .headers({ "content-type": "application/json" })
    .succeed({ message: `${process.env.GREETING} ${name}`, method: event.method });
};
