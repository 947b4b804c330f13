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

/** Lines of the build log `describe` shows without `--build-log`. */
const BUILD_LOG_TAIL = 10;

export function register(program: Command, deps: CliDeps): void {
  program
    .command("describe")
    .description("show a function: spec, instances, last exit and revisions")
    .argument("<name>", "function name")
    .option("--build-log", "print the whole image build log of the serving revision")
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd describe sum\n  $ funcd describe sum --build-log\n  $ funcd describe sum --json",
    )
    .action(async (name: string, options: { buildLog?: boolean }, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const client = ctx.client();
      const path = `/api/v1/functions/${encodeURIComponent(name)}`;
      const [fn, revisions] = await Promise.all([
        client.call<FunctionView>("GET", path),
        client.call<{ items?: RevisionView[] }>("GET", `${path}/revisions`),
      ]);
      // The build log comes with the single-revision answer only (lists leave it out: it can be long).
      const active = fn.activeRevision
        ? await client.call<RevisionView>(
            "GET",
            `${path}/revisions/${encodeURIComponent(fn.activeRevision.id)}`,
          )
        : undefined;
      const buildLog = active?.buildLog ?? null;
      if (options.buildLog) {
        out.result({ revision: active ?? null, buildLog }, () => {
          if (!buildLog)
            out.note(`${name}: the serving revision has no build log (no image was built for it)`);
          else out.line(buildLog);
        });
        return;
      }
      out.result({ function: fn, revisions: revisions.items ?? [], buildLog }, () => {
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

        if (buildLog) {
          const lines = buildLog.split("\n");
          out.line();
          out.line(
            `Build log (last ${Math.min(lines.length, BUILD_LOG_TAIL)} of ${lines.length} lines; all: funcd describe ${name} --build-log):`,
          );
          for (const line of lines.slice(-BUILD_LOG_TAIL)) out.line(`  | ${line}`);
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
