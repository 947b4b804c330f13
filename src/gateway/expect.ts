import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { FuncdError } from "../shared/errors.js";
import { sendProblem } from "./problem.js";

/** Requests whose client waits for `100 Continue` before sending the body, and has not been told yet. */
const awaitingContinue = new WeakSet<IncomingMessage>();

/**
 * `Expect` is answered by the listener, never forwarded (RFC 9110 §10.1.1). Without listeners Node's
 * server sends `100 Continue` at once and answers any other expectation with a bare-text 417. funcd
 * listens to both: `100-continue` requests go to `dispatch` like any other, and the interim answer waits
 * until whoever handles them is about to read the body ({@link sendContinue}) — so a request refused
 * early (no route, too large, no instance) is refused before the client uploads it. Any other
 * expectation is a 417 problem+json. Node emits `checkContinue` instead of `request`, so `dispatch` is
 * the server's request handler.
 */
export function handleExpectations(
  server: Server,
  dispatch: (req: IncomingMessage, res: ServerResponse) => void,
): void {
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(req);
    dispatch(req, res);
  });
  server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    // The body (if the client sends it anyway) is read and dropped; the connection stays usable.
    req.resume();
    sendProblem(
      res,
      new FuncdError(
        "EXPECTATION_FAILED",
        `funcd meets only "Expect: 100-continue", not "Expect: ${String(req.headers.expect)}"`,
      ),
      req.url,
    );
  });
}

/** Tells a client that waits for it to send the body now; a no-op for every other request. */
export function sendContinue(req: IncomingMessage, res: ServerResponse): void {
  if (!awaitingContinue.delete(req) || res.headersSent) return;
  res.writeContinue();
}
