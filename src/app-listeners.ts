import http from "node:http";
import type { AddressInfo } from "node:net";
import { isControlPath } from "./api/index.js";
import { handleExpectations, sendContinue } from "./gateway/expect.js";
import { sendProblem } from "./gateway/problem.js";
import { FuncdError } from "./shared/errors.js";

/**
 * The daemon's two listeners, one browser origin each (issue 11 B).
 *
 * - The **gateway** (`port`) runs functions: `/function/<name>`, custom routes, async invocations. A
 *   function's page is served from this origin, so it must hold nothing a browser keeps for funcd: it never
 *   serves the console (`/ui/`) or the interactive API docs (`/api/docs`) — both redirect to the admin
 *   listener. It still answers `/api/v1` for Bearer-token clients (the CLI, curl): a Bearer header is not an
 *   ambient credential (a browser never adds it by itself, and a page on another origin cannot send it
 *   without a CORS preflight the API does not answer), so a function's page reaching `/api/v1` has no token
 *   to send. `/healthz` and `/metrics` stay for load balancers and scrapers.
 * - The **admin** listener (`adminPort`) serves the console, the API and its docs, and never a function: the
 *   console's token (kept in that origin's sessionStorage) is out of every function's reach, since origins
 *   differ by port.
 */
export interface ListenerHandlers {
  /** Fastify's handler: the control API, docs and console. */
  api: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** The invocation gateway. */
  invoke: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

/** The admin listener: control paths only; anything else is a 404 that points at the gateway. */
export function createAdminServer(
  api: ListenerHandlers["api"],
  gatewayOrigin: (req: http.IncomingMessage) => string,
): http.Server {
  const dispatch = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (isControlPath(pathOf(req))) {
      // The API reads bodies as soon as it gets them: a client waiting for 100 Continue may send now.
      sendContinue(req, res);
      api(req, res);
      return;
    }
    req.resume();
    sendProblem(
      res,
      new FuncdError(
        "NOT_FOUND",
        `This is funcd's admin listener (console, API, docs); functions are invoked at ${gatewayOrigin(req)}${pathOf(req)}`,
      ),
      req.url,
    );
  };
  const server = http.createServer(dispatch);
  handleExpectations(server, dispatch);
  return server;
}

/** The gateway listener: invocations, plus the Bearer API, health and metrics; never the console. */
export function createGatewayServer(
  handlers: ListenerHandlers,
  adminOrigin: (req: http.IncomingMessage) => string,
): http.Server {
  const dispatch = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const pathname = pathOf(req);
    if (isBrowserOnly(pathname)) {
      req.resume();
      const headers: Record<string, string> = { location: `${adminOrigin(req)}${req.url ?? "/"}` };
      // The first dashboard kept the admin token in this origin's localStorage, where every function's
      // page can read it: a browser that comes back here for the console gets this origin's storage wiped.
      if (pathname === "/ui" || pathname.startsWith("/ui/")) headers["clear-site-data"] = '"storage"';
      res.writeHead(302, headers);
      res.end();
      return;
    }
    if (isControlPath(pathname)) {
      sendContinue(req, res);
      handlers.api(req, res);
      return;
    }
    handlers.invoke(req, res);
  };
  const server = http.createServer(dispatch);
  handleExpectations(server, dispatch);
  // Gateway connections are reused by clients and benchmark tools; keep them open longer than theirs.
  server.keepAliveTimeout = 65_000;
  return server;
}

/** Pages a browser shows (and where a person types the token): only on the admin origin. */
function isBrowserOnly(pathname: string): boolean {
  return (
    pathname === "/ui" ||
    pathname.startsWith("/ui/") ||
    pathname === "/api/docs" ||
    pathname.startsWith("/api/docs/")
  );
}

function pathOf(req: http.IncomingMessage): string {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

/**
 * `http://<host>:<port>` of `server` as the client reached this daemon: the host name the request used
 * (so a browser on another machine is sent to an address it can reach), the server's own port.
 */
export function originOf(req: http.IncomingMessage, server: http.Server, fallbackHost: string): string {
  const address = server.address() as AddressInfo | null;
  const port = address?.port ?? 0;
  let host = fallbackHost;
  try {
    if (req.headers.host) host = new URL(`http://${req.headers.host}`).hostname;
  } catch {
    // An unparsable Host header: the configured address will do.
  }
  if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  return `http://${host}:${port}`;
}

/** The base URL a listening server answers at. */
export function urlOf(server: http.Server): string {
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/** Listens, rejecting with the listen error (EADDRINUSE, EACCES) instead of emitting it. */
export function listenOn(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
