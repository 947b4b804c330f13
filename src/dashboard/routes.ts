import type { IncomingMessage } from "node:http";
import type { FastifyInstance } from "fastify";
import { dashboardPage } from "./page.js";

export interface DashboardOptions {
  /** `http://host:port` of the invocation gateway, as the browser that asked can reach it. */
  gatewayOrigin(req: IncomingMessage): string;
}

/**
 * The console at `/ui/`. Registered on the Fastify app whose server is the admin listener (the gateway's
 * listener redirects `/ui` there, src/app-listeners.ts).
 */
export function dashboardRoutes(options: DashboardOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get("/ui", { schema: { hide: true } }, async (_request, reply) => reply.redirect("/ui/"));
    app.get("/ui/", { schema: { hide: true } }, async (request, reply) =>
      reply
        .type("text/html; charset=utf-8")
        // Not framed by any page (a function's page could otherwise overlay it and harvest clicks), not
        // cached, and no referrer leaves it.
        .header("x-frame-options", "DENY")
        .header("content-security-policy", "frame-ancestors 'none'")
        .header("cache-control", "no-store")
        .header("referrer-policy", "no-referrer")
        .send(dashboardPage({ gatewayOrigin: options.gatewayOrigin(request.raw) })),
    );
  };
}
