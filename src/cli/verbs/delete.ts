import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("delete")
    .alias("rm")
    .description("delete a function, its instances and its revisions")
    .argument("<name>", "function name")
    .option("-y, --yes", "accepted for scripts; funcd never asks")
    .addHelpText("after", "\nExamples:\n  $ funcd delete sum\n  $ funcd rm sum")
    .action(async (name: string, _options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      await client().call<void>("DELETE", `/api/v1/functions/${encodeURIComponent(name)}`);
      out.result({ deleted: name }, () => out.line(`Deleted ${name}`));
    });
}
