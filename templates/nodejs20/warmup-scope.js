// Imported once by a generic runtime's rehearsal (see rehearse() in server.mjs): a `.js` file, so Node's
// package-scope lookup (which decides whether a function's handler.js is CommonJS or ESM) runs before a
// real function needs it. Valid in either module format on purpose; it does nothing.
void 0;
