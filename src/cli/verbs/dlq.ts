import type { Command } from "commander";
import { integer } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { formatTime } from "../views.js";

interface DeadLetterView {
  executionId: string;
  method: string;
  path: string;
  attempts: number;
  statusCode: number | null;
  error: string | null;
  queuedAt: string;
  deadLetteredAt: string;
}

const HEADERS = ["EXECUTION", "QUEUED", "DEAD-LETTERED", "ATTEMPTS", "STATUS", "REQUEST", "ERROR"];

/** `funcd dlq list NAME` and `funcd dlq redrive NAME [ID...]`: async invocations that ran out of attempts. */
export function register(program: Command, deps: CliDeps): void {
  const dlq = program
    .command("dlq")
    .description("dead letters: async invocations that failed every attempt or got too old")
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd dlq list sum\n  $ funcd dlq redrive sum            # all of them\n  $ funcd dlq redrive sum 2f6c… 9a1b…",
    );

  dlq
    .command("list")
    .alias("ls")
    .description("a function's dead letters, newest first")
    .argument("<name>", "function name")
    .option("--limit <n>", "at most this many", integer(1, 1000))
    .option("--before <cursor>", "the cursor printed under the previous page")
    .action(async (name: string, options: { limit?: number; before?: string }, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const query = new URLSearchParams();
      if (options.limit) query.set("limit", String(options.limit));
      if (options.before) query.set("before", options.before);
      const body = await client().call<{ items: DeadLetterView[]; next: number | null }>(
        "GET",
        `/api/v1/functions/${encodeURIComponent(name)}/dlq?${query}`,
      );
      out.result(body, () => {
        if (body.items.length === 0) {
          out.line(`No dead letters for ${name}.`);
          return;
        }
        out.table(
          HEADERS,
          body.items.map((d) => [
            d.executionId,
            formatTime(d.queuedAt, true),
            formatTime(d.deadLetteredAt, true),
            String(d.attempts),
            d.statusCode === null ? "-" : String(d.statusCode),
            `${d.method} ${d.path}`.slice(0, 40),
            (d.error ?? "").slice(0, 60),
          ]),
        );
        if (body.next !== null) out.note(`More: funcd dlq list ${name} --before ${body.next}`);
        out.note(`Queue them again: funcd dlq redrive ${name} [ID...]`);
      });
    });

  dlq
    .command("redrive")
    .description("queue dead letters again (all of the function's when no id is given)")
    .argument("<name>", "function name")
    .argument("[ids...]", "execution ids")
    .action(async (name: string, ids: string[], _options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const body = await client().call<{ redriven: string[]; count: number; missing: string[] }>(
        "POST",
        `/api/v1/functions/${encodeURIComponent(name)}/dlq/redrive`,
        ids.length > 0 ? { ids } : {},
      );
      out.result(body, () => {
        out.line(
          body.count === 0
            ? `Nothing to redrive for ${name}.`
            : `Queued ${body.count} invocation${body.count === 1 ? "" : "s"} of ${name} again.`,
        );
        for (const id of body.missing) out.note(`Not a dead letter of ${name}: ${id}`);
      });
    });
}
