import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Deployer, DeployResult, Progress } from "../deploy/deployer.js";
import {
  DeployRequestFields,
  DeployRequestSchema,
  FUNCTION_NAME,
  RouteSchema,
  ScalePatchSchema,
  withResources,
} from "../deploy/spec.js";
import type { LogHub } from "../observability/log-hub.js";
import type { Fleet } from "../scaler/fleet.js";
import { FuncdError } from "../shared/errors.js";
import type { Store } from "../store/types.js";
import { respondWithProgress } from "./progress.js";
import { deployView, functionView, revisionView } from "./views.js";

export interface FunctionRoutesDeps {
  store: Store;
  fleet: Fleet;
  deployer: Deployer;
  logs: LogHub;
}

const NameParams = z.object({ name: z.string().regex(FUNCTION_NAME, "not a valid function name") });
const UpdateBody = DeployRequestFields.extend({ name: DeployRequestFields.shape.name.optional() }).transform(
  withResources,
);
const SettingsBody = z.object({
  routes: z.array(RouteSchema).max(32).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
const LogsQuery = z.object({
  tail: z.coerce.number().int().min(0).max(10_000).default(100),
  follow: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
  requestId: z.string().optional(),
});

const tags = ["functions"];

/** The control API for functions: CRUD, revisions, rollback, scale and logs. */
export function functionRoutes(deps: FunctionRoutesDeps) {
  const { store, fleet, deployer, logs } = deps;

  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();

    app.get("/api/v1/functions", { schema: { tags, summary: "List functions" } }, async () => ({
      items: store.functions.list().map((f) => functionView(f, store, fleet)),
    }));

    app.post(
      "/api/v1/functions",
      {
        schema: {
          tags,
          summary: "Create a function (deploys its first revision)",
          body: DeployRequestSchema,
        },
      },
      async (request, reply) =>
        respondToDeploy(
          deps,
          request,
          reply,
          (onProgress) => deployer.deploy(request.body, { onProgress, mustCreate: true }),
          201,
        ),
    );

    app.get(
      "/api/v1/functions/:name",
      { schema: { tags, summary: "Describe a function", params: NameParams } },
      async (request) => functionView(requireFunction(store, request.params.name), store, fleet),
    );

    app.put(
      "/api/v1/functions/:name",
      {
        schema: {
          tags,
          summary: "Create or update a function; unchanged code and spec is a no-op",
          params: NameParams,
          body: UpdateBody,
        },
      },
      async (request, reply) => {
        const { name } = request.params;
        if (request.body.name !== undefined && request.body.name !== name) {
          throw new FuncdError(
            "BAD_REQUEST",
            `The body names "${request.body.name}" but the URL names "${name}"`,
          );
        }
        const existed = store.functions.get(name) !== undefined;
        return respondToDeploy(
          deps,
          request,
          reply,
          (onProgress) => deployer.deploy({ ...request.body, name }, { onProgress }),
          existed ? 200 : 201,
        );
      },
    );

    app.put(
      "/api/v1/functions/:name/code",
      {
        schema: {
          tags,
          summary: "Replace a function's code with a .tar.gz body (Content-Type: application/gzip)",
          params: NameParams,
        },
      },
      async (request, reply) => {
        if (!Buffer.isBuffer(request.body)) {
          throw new FuncdError(
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the code as a .tar.gz body with Content-Type: application/gzip",
          );
        }
        const body = request.body;
        return respondToDeploy(
          deps,
          request,
          reply,
          (onProgress) => deployer.deployArchive(request.params.name, body, onProgress),
          200,
        );
      },
    );

    app.delete(
      "/api/v1/functions/:name",
      {
        schema: { tags, summary: "Delete a function, its revisions, logs and instances", params: NameParams },
      },
      async (request, reply) => {
        await deployer.remove(request.params.name);
        return reply.code(204).send();
      },
    );

    app.get(
      "/api/v1/functions/:name/revisions",
      { schema: { tags, summary: "List a function's revisions, newest first", params: NameParams } },
      async (request) => {
        const fn = requireFunction(store, request.params.name);
        return { items: store.revisions.listFor(fn.name).map((r) => revisionView(r, fn.activeRevision)) };
      },
    );

    app.get(
      "/api/v1/functions/:name/revisions/:revision",
      {
        schema: {
          tags,
          summary: "One revision, with its image's build log (revision id, id prefix, number or 'active')",
          params: NameParams.extend({ revision: z.string().min(1) }),
        },
      },
      async (request) => {
        const fn = requireFunction(store, request.params.name);
        const revision = findRevision(store, fn.name, fn.activeRevision, request.params.revision);
        return revisionView(revision, fn.activeRevision, true);
      },
    );

    app.post(
      "/api/v1/functions/:name/rollback",
      {
        schema: {
          tags,
          summary: "Serve an earlier revision again (default: the one before the active one)",
          params: NameParams,
          body: z.object({ revision: z.string().optional() }).optional(),
        },
      },
      async (request) => {
        const result = await deployer.rollback(request.params.name, request.body?.revision);
        return deployView(result, store, fleet);
      },
    );

    app.patch(
      "/api/v1/functions/:name/scale",
      {
        schema: {
          tags,
          summary: "Change scale settings live",
          description:
            "Only the fields sent change. Durations are written like in a spec: `30s`, `500ms`, `5m`, or a number of seconds.",
          params: NameParams,
          body: ScalePatchSchema,
        },
      },
      async (request) => {
        const current = requireFunction(store, request.params.name);
        // The body holds only what was sent, already in milliseconds; the deployer merges it over the stored settings.
        return functionView(deployer.updateSettings(current.name, { scale: request.body }), store, fleet);
      },
    );

    app.patch(
      "/api/v1/functions/:name",
      {
        schema: {
          tags,
          summary: "Change routes, labels or annotations live",
          params: NameParams,
          body: SettingsBody,
        },
      },
      async (request) => {
        const current = requireFunction(store, request.params.name);
        const patch = Object.fromEntries(Object.entries(request.body).filter(([, v]) => v !== undefined));
        return functionView(deployer.updateSettings(current.name, patch), store, fleet);
      },
    );

    app.get(
      "/api/v1/functions/:name/logs",
      {
        schema: {
          tags,
          summary: "A function's log lines as NDJSON; follow=true keeps the stream open",
          params: NameParams,
          querystring: LogsQuery,
        },
      },
      async (request, reply) => {
        const fn = requireFunction(store, request.params.name);
        const { tail, follow, requestId } = request.query;
        const lines = logs.query({ functionName: fn.name, tail, ...(requestId ? { requestId } : {}) });
        if (!follow) {
          return reply.type("application/x-ndjson").send(lines.map((l) => `${JSON.stringify(l)}\n`).join(""));
        }
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
        // Send the headers now: a follower with no backlog must not wait for the first line to get a response.
        raw.flushHeaders();
        for (const line of lines) raw.write(`${JSON.stringify(line)}\n`);
        const lastId = lines.at(-1)?.id ?? logs.query({ functionName: fn.name, tail: 1 }).at(-1)?.id ?? 0;
        const stop = logs.follow(fn.name, lastId, (more) => {
          for (const line of more) {
            if (!requestId || line.requestId === requestId) raw.write(`${JSON.stringify(line)}\n`);
          }
        });
        // A comment-free heartbeat (an empty line) keeps idle proxies from closing the stream.
        const heartbeat = setInterval(() => raw.write("\n"), 15_000);
        request.raw.once("close", () => {
          clearInterval(heartbeat);
          stop();
        });
      },
    );
  };
}

function requireFunction(store: Store, name: string) {
  const record = store.functions.get(name);
  if (!record) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
  return record;
}

/** A revision by id, id prefix, number (`3` or `#3`) or `active`. */
function findRevision(store: Store, name: string, activeId: string | null, wanted: string) {
  const revisions = store.revisions.listFor(name);
  const number = wanted.replace(/^#/, "");
  const found =
    wanted === "active"
      ? revisions.find((r) => r.id === activeId)
      : (revisions.find((r) => r.id === wanted) ??
        revisions.find((r) => String(r.number) === number) ??
        revisions.find((r) => r.id.startsWith(wanted)));
  if (!found) throw new FuncdError("REVISION_NOT_FOUND", `Function "${name}" has no revision "${wanted}"`);
  return found;
}

/**
 * Runs a deploy and answers with its result (`status` when it changed anything, else 200) — or, when
 * the client accepts NDJSON, streams progress lines first so the CLI can show what is happening.
 */
function respondToDeploy(
  deps: FunctionRoutesDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  run: (onProgress: Progress) => Promise<DeployResult>,
  status: number,
) {
  return respondWithProgress(request, reply, "deploy", run, (result) => ({
    status: result.changed ? status : 200,
    body: deployView(result, deps.store, deps.fleet),
  }));
}
