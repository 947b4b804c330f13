// A handler the runtime loads and calls once in generic mode, before listening, so the code paths of a
// specialization and of a first request are compiled before a real function needs them (see rehearse()
// in server.mjs). It is never a function's handler.
exports.main = async (event) => ({ rehearsal: event.data });
