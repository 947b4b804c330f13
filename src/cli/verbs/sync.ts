import type { Command } from "commander";
import type { DeployResult } from "../client.js";
import { type CliDeps, contextFor } from "../context.js";
import { deployedLine } from "../deployer.js";
import { toCliError } from "../errors.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("sync")
    .description("fetch a git-sourced function's ref again and deploy it if it moved")
    .argument("<name>", "the function")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd sync orders            # the branch moved: a new revision; it did not: unchanged

A function is git-sourced when its spec has source.git (url, ref, dir, secret) or it came from a
Kyma Function with source.gitRepository. A fetch that fails leaves the serving revision alone.`,
    )
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = contextFor(command, deps);
      const client = ctx.client();
      const task = ctx.out.task(`${name}: syncing`);
      try {
        const result = await client.progressCall<DeployResult & { revision: { commit?: string | null } }>(
          "POST",
          `/api/v1/functions/${encodeURIComponent(name)}/sync`,
          {},
          (message) => task.update(`${name}: ${message}`),
          { title: "Sync outcome unknown", hint: `Check with \`funcd describe ${name}\`.` },
        );
        const commit = result.revision?.commit ? ` at ${result.revision.commit.slice(0, 12)}` : "";
        task.succeed(`${deployedLine(client.baseUrl, name, result)}${commit}`);
        if (ctx.out.json) ctx.out.data(result);
      } catch (err) {
        const error = toCliError(err);
        task.fail(`${name}: ${error.title}`);
        throw error;
      }
    });
}
