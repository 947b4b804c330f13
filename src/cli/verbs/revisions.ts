import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { REVISION_HEADERS, type RevisionView, revisionRows } from "../views.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("revisions")
    .description("list a function's revisions, newest first (* marks the active one)")
    .argument("<name>", "function name")
    .addHelpText("after", "\nExamples:\n  $ funcd revisions sum")
    .action(async (name: string, _options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const body = await client().call<{ items?: RevisionView[] }>(
        "GET",
        `/api/v1/functions/${encodeURIComponent(name)}/revisions`,
      );
      out.result(body, () => {
        const items = body.items ?? [];
        if (items.length === 0) out.line(`${name} has no revisions yet.`);
        else out.table(REVISION_HEADERS, revisionRows(items));
      });
    });
}
