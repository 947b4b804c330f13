import { timingSafeEqual } from "node:crypto";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { Applier } from "../deploy/apply.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import { FuncdError } from "../shared/errors.js";
import { applyRoutes } from "./apply.js";
import { type AsyncRoutesDeps, asyncRoutes } from "./async.js";
import { installProblemHandlers } from "./errors.js";
import { executionRoutes } from "./executions.js";
import { type FunctionRoutesDeps, functionRoutes } from "./functions.js";
import { type ImagesRouteOptions, imageRoutes } from "./images.js";
import { type SecretRoutesDeps, secretRoutes } from "./secrets.js";

export interface ApiDeps extends FunctionRoutesDeps {
  metrics: DaemonMetrics;
  token: string;
  version: string;
  /** Dead letters and redrive; without it those routes are absent. */
  async?: Omit<AsyncRoutesDeps, "store">;
  /** Images and builds (`/api/v1/images`, `/api/v1/builds`); without it those routes are absent. */
  images?: ImagesRouteOptions;
  /** Secrets (`/api/v1/secrets`); without it those routes are absent. */
  secrets?: Omit<SecretRoutesDeps, "store">;
  /** `POST /api/v1/apply` (Kyma, Kubeless, OpenFaaS and funcd descriptions); without it the route is absent. */
  applier?: Applier;
}

/** Paths the control plane answers; everything else is an invocation for the gateway. */
export function isControlPath(pathname: string): boolean {
  return (
    pathname === "/" ||
    pathname.startsWith("/api/") ||
    pathname === "/api" ||
    pathname === "/healthz" ||
    pathname === "/metrics" ||
    pathname === "/ui" ||
    pathname.startsWith("/ui/")
  );
}

/** Registers the control API, its OpenAPI document and docs UI, health and metrics on `app`. */
export async function registerApi(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installProblemHandlers(app);

  for (const type of ["application/gzip", "application/x-gzip", "application/octet-stream"]) {
    app.addContentTypeParser(type, { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  }

  const expected = Buffer.from(`Bearer ${deps.token}`);
  app.addHook("onRequest", async (request) => {
    const path = request.url;
    if (!path.startsWith("/api/") || path.startsWith("/api/docs")) return;
    const given = Buffer.from(request.headers.authorization ?? "");
    // Constant-time compare so the token cannot be guessed byte by byte from timings.
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new FuncdError(
        "UNAUTHORIZED",
        "Send the admin token as 'Authorization: Bearer <token>' (it is in the token file of the data dir, or FUNCD_TOKEN)",
      );
    }
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: "funcd control API",
        version: deps.version,
        description: "Deploy, inspect and manage functions.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: "/api/docs" });

  app.get("/", { schema: { hide: true } }, async () => ({
    name: "funcd",
    version: deps.version,
    api: "/api/v1",
    docs: "/api/docs",
    dashboard: "/ui/",
    invoke: "/function/<name>",
  }));
  app.get("/healthz", { schema: { hide: true } }, async () => ({
    status: "ok",
    functions: deps.store.functions.list().length,
  }));
  app.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
    reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
  );

  await app.register(functionRoutes(deps));
  if (deps.applier) await app.register(applyRoutes(deps.applier, deps));
  await app.register(executionRoutes({ store: deps.store, logs: deps.logs, now: () => Date.now() }));
  if (deps.async) await app.register(asyncRoutes({ store: deps.store, ...deps.async }));
  if (deps.images) await app.register(imageRoutes(deps.images));
  if (deps.secrets) await app.register(secretRoutes({ store: deps.store, ...deps.secrets }));
}
