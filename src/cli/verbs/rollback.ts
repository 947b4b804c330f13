import type { Command } from "commander";
import type { DeployResult } from "../client.js";
import { type CliDeps, contextFor } from "../context.js";
import { functionUrl, revisionLabel, shortId } from "../views.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("rollback")
    .description("serve an older revision again (default: the previous ready one)")
    .argument("<name>", "function name")
    .option("--to <revision>", "revision number (e.g. 3) or id")
    .addHelpText("after", "\nExamples:\n  $ funcd rollback sum\n  $ funcd rollback sum --to 3")
    .action(async (name: string, options: { to?: string }, command: Command) => {
      const ctx = contextFor(command, deps);
      const client = ctx.client();
      const body = options.to === undefined ? {} : { revision: options.to.replace(/^#/, "") };
      const result = await client.call<Pick<DeployResult, "function" | "revision">>(
        "POST",
        `/api/v1/functions/${encodeURIComponent(name)}/rollback`,
        body,
      );
      ctx.out.result(result, () => {
        const rev = result.revision;
        ctx.out.line(
          `Rolled back ${name} to revision ${revisionLabel(rev)} (${shortId(rev?.id)}) → ${functionUrl(client.baseUrl, result.function ?? { name })}`,
        );
      });
    });
}
