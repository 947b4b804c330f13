import type { Command } from "commander";
import { integer } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { formatLogLine, formatTime, type LogLineView } from "../views.js";

interface ExecutionView {
  id: string;
  functionName: string;
  revisionId: string | null;
  trigger: string;
  startedAt: string;
  durationMs: number;
  statusCode: number;
  outcome: string;
  coldStart: boolean;
  instanceId: string | null;
  error: string | null;
  requestId: string | null;
  requestBytes: number;
  responseBytes: number;
  // Async invocations only.
  state?: string;
  queuedAt?: string;
  attempt?: number;
  callback?: { url: string; status: string; attempts: number; error: string | null };
  logs?: LogLineView[];
}

interface ListOptions {
  status?: string;
  since?: string;
  limit?: number;
  before?: string;
}

const HEADERS = ["EXECUTION", "FUNCTION", "STARTED", "DURATION", "STATUS", "OUTCOME", "COLD", "ERROR"];

function rows(items: ExecutionView[]): string[][] {
  return items.map((e) => [
    e.id,
    e.functionName,
    formatTime(e.startedAt, true),
    `${Math.round(e.durationMs * 10) / 10} ms`,
    String(e.statusCode),
    e.outcome,
    e.coldStart ? "yes" : "",
    (e.error ?? "").slice(0, 60),
  ]);
}

/** `funcd executions [NAME]` and `funcd executions show ID`: the record of every invocation. */
export function register(program: Command, deps: CliDeps): void {
  const executions = program
    .command("executions")
    .alias("exec")
    .description("list recorded invocations, newest first")
    .argument("[name]", "only this function")
    .option(
      "--status <outcome>",
      "success | error | timeout | crashed | oomkilled | throttled | pending | failed",
    )
    .option("--since <when>", "e.g. 1h, 30m, or an ISO time")
    .option("--limit <n>", "at most this many", integer(1, 1000))
    .option("--before <cursor>", "the cursor printed under the previous page")
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd executions sum --status failed --since 1h\n  $ funcd executions show 2f6c…",
    )
    .action(async (name: string | undefined, options: ListOptions, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const query = new URLSearchParams();
      if (name) query.set("function", name);
      if (options.status) query.set("status", options.status);
      if (options.since) query.set("since", options.since);
      if (options.limit) query.set("limit", String(options.limit));
      if (options.before) query.set("before", options.before);
      const body = await client().call<{ items: ExecutionView[]; next: number | null }>(
        "GET",
        `/api/v1/executions?${query}`,
      );
      out.result(body, () => {
        if (body.items.length === 0) out.line("No executions recorded.");
        else out.table(HEADERS, rows(body.items));
        if (body.next !== null)
          out.note(`More: funcd executions ${name ?? ""} --before ${body.next}`.replace("  ", " "));
      });
    });

  executions
    .command("show")
    .description("one execution with the log lines written while it ran")
    .argument("<id>", "execution id")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const e = await client().call<ExecutionView>("GET", `/api/v1/executions/${encodeURIComponent(id)}`);
      out.result(e, () => {
        const fields: Array<[string, string]> = [
          ["Execution", e.id],
          ["Function", e.functionName],
          ["Revision", e.revisionId ?? "-"],
          ["Trigger", e.trigger],
          ...(e.state === undefined
            ? []
            : ([
                ["State", `${e.state}, attempt ${e.attempt ?? 0}`],
                ["Queued", formatTime(e.queuedAt, true)],
              ] as Array<[string, string]>)),
          ["Started", formatTime(e.startedAt, true)],
          ["Duration", `${e.durationMs} ms`],
          ["Status", `${e.statusCode} (${e.outcome})${e.coldStart ? ", cold start" : ""}`],
          ["Instance", e.instanceId ?? "-"],
          ["Request id", e.requestId ?? "-"],
          ["Bytes in/out", `${e.requestBytes} / ${e.responseBytes}`],
        ];
        if (e.error) fields.push(["Error", e.error]);
        if (e.callback) {
          const c = e.callback;
          fields.push([
            "Callback",
            `${c.status} after ${c.attempts} attempt(s) → ${c.url}${c.error ? ` (${c.error})` : ""}`,
          ]);
        }
        const width = Math.max(...fields.map(([k]) => k.length));
        for (const [k, v] of fields) out.line(`${k.padEnd(width)}  ${v}`);
        const logs = e.logs ?? [];
        out.line();
        out.line(logs.length === 0 ? "No log lines." : "Logs:");
        for (const line of logs) out.line(`  ${formatLogLine(line)}`);
      });
    });
}
