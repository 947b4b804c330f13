import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { type FunctionView, LIST_HEADERS, listRows } from "../views.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("list")
    .alias("ls")
    .description("list deployed functions")
    .addHelpText("after", "\nExamples:\n  $ funcd list\n  $ funcd ls --json")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const body = await client().call<{ items?: FunctionView[] }>("GET", "/api/v1/functions");
      out.result(body, () => {
        const items = body.items ?? [];
        if (items.length === 0) {
          out.line(
            "No functions yet. Create one with `funcd new hello` and deploy it with `funcd deploy ./hello`.",
          );
          return;
        }
        out.table(LIST_HEADERS, listRows(items));
      });
    });
}
