import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { LogHub } from "../observability/log-hub.js";
import { parseDuration } from "../shared/duration.js";
import { FuncdError } from "../shared/errors.js";
import type { ExecutionRecord, Store } from "../store/types.js";

export interface ExecutionRoutesDeps {
  store: Store;
  logs: LogHub;
  now: () => number;
}

const OUTCOMES = ["success", "error", "timeout", "crashed", "oomkilled", "throttled", "pending"] as const;

const ListQuery = z.object({
  function: z.string().optional().describe("only this function's executions"),
  status: z
    .enum([...OUTCOMES, "failed"])
    .optional()
    .describe("an outcome, or `failed` for every finished outcome but success"),
  since: z.string().optional().describe("a duration back from now (`1h`, `30m`) or an ISO time"),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  before: z.coerce.number().int().optional().describe("cursor: `next` of the previous page"),
});

/**
 * What the API shows of an execution: times as ISO strings. Async records also have `state`, `queuedAt`,
 * `attempt` and (in `GET /executions/{id}`) the bounded `request` and `result`; their `finishedAt` is null
 * until the invocation is over.
 */
export function executionView(record: ExecutionRecord) {
  const iso = (ms: number) => new Date(ms).toISOString();
  const isAsync = record.state !== undefined;
  return {
    ...record,
    startedAt: iso(record.startedAt),
    finishedAt: isAsync
      ? record.finishedAt === undefined
        ? null
        : iso(record.finishedAt)
      : iso(record.startedAt + record.durationMs),
    ...(record.queuedAt === undefined ? {} : { queuedAt: iso(record.queuedAt) }),
    ...(record.callback?.at == null ? {} : { callback: { ...record.callback, at: iso(record.callback.at) } }),
  };
}

function sinceOf(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const ago = parseDuration(value);
  if (ago !== undefined) return now - ago;
  const at = Date.parse(value);
  if (Number.isNaN(at))
    throw new FuncdError(
      "BAD_REQUEST",
      `"since" must be a duration such as 1h or an ISO time, not "${value}"`,
    );
  return at;
}

/** Execution records: a page of them (newest first) and one with its log lines. */
export function executionRoutes(deps: ExecutionRoutesDeps) {
  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ["executions"];

    app.get(
      "/api/v1/executions",
      {
        schema: {
          tags,
          summary: "Execution records, newest first, paginated with `before`",
          querystring: ListQuery,
        },
      },
      async (request) => {
        const q = request.query;
        const since = sinceOf(q.since, deps.now());
        // "failed" is every outcome but success: fetch and filter, since the store filters one outcome.
        const wanted = q.status === "failed" ? undefined : q.status;
        let items: ExecutionRecord[] = [];
        let before = q.before;
        for (let round = 0; round < 20 && items.length < q.limit; round++) {
          const page = deps.store.executions.query({
            ...(q.function ? { functionName: q.function } : {}),
            ...(wanted ? { outcome: wanted } : {}),
            ...(since === undefined ? {} : { since }),
            ...(before === undefined ? {} : { before }),
            limit: q.limit,
          });
          items.push(
            ...(q.status === "failed"
              ? page.filter((e) => e.outcome !== "success" && e.outcome !== "pending")
              : page),
          );
          if (page.length < q.limit) {
            before = undefined;
            break;
          }
          before = page.at(-1)?.startedAt;
        }
        items = items.slice(0, q.limit);
        const last = items.at(-1);
        const next = items.length === q.limit && last ? last.startedAt : null;
        return { items: items.map(executionView), next };
      },
    );

    app.get(
      "/api/v1/executions/:id",
      {
        schema: {
          tags,
          summary: "One execution with the log lines written while it ran",
          params: z.object({ id: z.string().min(1).max(200) }),
        },
      },
      async (request) => {
        const record = deps.store.executions.get(request.params.id);
        if (!record) throw new FuncdError("NOT_FOUND", `No execution with id "${request.params.id}"`);
        const logs = record.requestId
          ? deps.logs.query({ functionName: record.functionName, requestId: record.requestId, tail: 1000 })
          : [];
        return { ...executionView(record), logs };
      },
    );
  };
}
