import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import {
  describeFields,
  type FunctionView,
  formatTime,
  INSTANCE_HEADERS,
  instanceRows,
  REVISION_HEADERS,
  type RevisionView,
  revisionRows,
} from "../views.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("describe")
    .description("show a function: spec, instances, last exit and revisions")
    .argument("<name>", "function name")
    .addHelpText("after", "\nExamples:\n  $ funcd describe sum\n  $ funcd describe sum --json")
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const client = ctx.client();
      const path = `/api/v1/functions/${encodeURIComponent(name)}`;
      const [fn, revisions] = await Promise.all([
        client.call<FunctionView>("GET", path),
        client.call<{ items?: RevisionView[] }>("GET", `${path}/revisions`),
      ]);
      out.result({ function: fn, revisions: revisions.items ?? [] }, () => {
        const fields = describeFields(fn, client.baseUrl);
        const width = Math.max(...fields.map(([k]) => k.length)) + 1;
        for (const [key, value] of fields) out.line(`${`${key}:`.padEnd(width)} ${value}`);

        out.line();
        const instances = fn.instances ?? [];
        if (instances.length === 0) out.line("Instances: none running (started on the first request)");
        else {
          out.line("Instances:");
          out.table(INSTANCE_HEADERS, instanceRows(instances));
        }

        if (fn.lastExit) {
          const e = fn.lastExit;
          const how = [
            e.reason ?? "exited",
            e.code === null || e.code === undefined ? undefined : `code ${e.code}`,
            e.signal ? `signal ${e.signal}` : undefined,
          ].filter(Boolean);
          out.line();
          out.line(`Last exit: ${how.join(", ")} at ${formatTime(e.at)}`);
          for (const line of e.lastLogLines ?? []) out.line(`  | ${line}`);
        }

        out.line();
        const items = revisions.items ?? [];
        if (items.length === 0) out.line("Revisions: none");
        else {
          out.line("Revisions:");
          out.table(REVISION_HEADERS, revisionRows(items));
        }
      });
    });
}
