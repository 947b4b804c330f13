import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { FUNCTION_NAME } from "../deploy/spec.js";
import { FuncdError } from "../shared/errors.js";
import type { DeadLetter, Store } from "../store/types.js";

export interface AsyncRoutesDeps {
  store: Store;
  /** Re-enqueues dead letters (all of the function's when `ids` is omitted); returns the ids re-enqueued. */
  redrive(functionName: string, ids?: readonly string[]): string[];
  /** Async deliveries of the function in flight now. */
  inFlight(functionName: string): number;
}

const NameParams = z.object({ name: z.string().regex(FUNCTION_NAME, "not a valid function name") });
const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  before: z.coerce.number().int().optional().describe("cursor: `next` of the previous page"),
});
const RedriveBody = z
  .object({
    ids: z
      .array(z.string().min(1).max(200))
      .max(10_000)
      .optional()
      .describe("execution ids to re-enqueue; all of the function's dead letters when omitted"),
  })
  .optional();

function deadLetterView(d: DeadLetter) {
  return {
    executionId: d.id,
    function: d.functionName,
    method: d.method,
    path: d.path,
    requestId: d.requestId,
    attempts: d.attempts,
    statusCode: d.statusCode,
    error: d.error,
    callbackUrl: d.callbackUrl,
    queuedAt: new Date(d.queuedAt).toISOString(),
    deadLetteredAt: new Date(d.deadLetteredAt).toISOString(),
    location: `/api/v1/executions/${encodeURIComponent(d.id)}`,
  };
}

/** Async invocations of a function: queue depth, the dead-letter list and redrive. */
export function asyncRoutes(deps: AsyncRoutesDeps) {
  const requireFunction = (name: string) => {
    if (!deps.store.functions.get(name))
      throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
  };
  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ["async"];

    app.get(
      "/api/v1/functions/:name/queue",
      {
        schema: {
          tags,
          summary: "How many async invocations are queued, running and dead-lettered",
          params: NameParams,
        },
      },
      async (request) => {
        const { name } = request.params;
        requireFunction(name);
        const counts = deps.store.queue.counts(name);
        return {
          queued: counts.queued,
          running: counts.running,
          deadLettered: counts["dead-lettered"],
          inFlight: deps.inFlight(name),
        };
      },
    );

    app.get(
      "/api/v1/functions/:name/dlq",
      {
        schema: {
          tags,
          summary:
            "The function's dead letters (async invocations that ran out of attempts or time), newest first",
          params: NameParams,
          querystring: ListQuery,
        },
      },
      async (request) => {
        const { name } = request.params;
        requireFunction(name);
        const items = deps.store.queue.deadLetters(name, request.query.limit, request.query.before);
        const last = items.at(-1);
        return {
          items: items.map(deadLetterView),
          next: items.length === request.query.limit && last ? last.deadLetteredAt : null,
        };
      },
    );

    app.post(
      "/api/v1/functions/:name/dlq/redrive",
      {
        schema: {
          tags,
          summary: "Queue dead letters again, with attempts and event age reset",
          params: NameParams,
          body: RedriveBody,
        },
      },
      async (request) => {
        const { name } = request.params;
        requireFunction(name);
        const ids = request.body?.ids;
        const redriven = deps.redrive(name, ids);
        const missing = ids ? ids.filter((id) => !redriven.includes(id)) : [];
        return { redriven, count: redriven.length, missing };
      },
    );
  };
}
