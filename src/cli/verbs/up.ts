import { resolve } from "node:path";
import type { Command } from "commander";
import type { DeployResult } from "../client.js";
import { type CliDeps, contextFor } from "../context.js";
import { deployFunction } from "../deployer.js";
import { CliError, toCliError } from "../errors.js";
import { readStack } from "../stack.js";
import { functionUrl, revisionLabel } from "../views.js";

type Outcome = { name: string; result: DeployResult } | { name: string; error: CliError };

export function register(program: Command, deps: CliDeps): void {
  program
    .command("up")
    .description("deploy every function of a stack file, one after the other")
    .option("-f, --file <path>", "the stack file", "funcd.yaml")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd up
  $ funcd up -f examples/funcd.yaml

A stack file maps names to specs; path: is the folder (relative to the file, default ./<name>):
  functions:
    sum:
      path: ./examples/sum
      routes: [/sum]`,
    )
    .action(async (options: { file: string }, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const stack = await readStack(resolve(options.file));
      const client = ctx.client();
      const outcomes: Outcome[] = [];
      for (const fn of stack.functions) {
        try {
          outcomes.push({ name: fn.name, result: await deployFunction(out, client, fn) });
        } catch (err) {
          const error = toCliError(err);
          // The daemon being down fails every function the same way: stop at the first.
          if (error.code === "DAEMON_UNREACHABLE") throw error;
          if (!out.json) out.error(error);
          outcomes.push({ name: fn.name, error });
        }
      }
      const failed = outcomes.filter((o) => "error" in o);
      out.result(
        outcomes.map((o) =>
          "error" in o
            ? {
                name: o.name,
                ok: false,
                problem: {
                  code: o.error.code,
                  title: o.error.title,
                  detail: o.error.detail,
                  ...o.error.extra,
                },
              }
            : { name: o.name, ok: true, ...o.result },
        ),
        () => {
          out.line();
          out.table(
            ["NAME", "RESULT", "REVISION", "URL / ERROR"],
            outcomes.map((o) =>
              "error" in o
                ? [o.name, "failed", "-", (o.error.detail || o.error.title).split("\n")[0] ?? ""]
                : [
                    o.name,
                    o.result.changed === false ? "unchanged" : "deployed",
                    revisionLabel(o.result.revision),
                    functionUrl(client.baseUrl, o.result.function ?? { name: o.name }),
                  ],
            ),
          );
        },
      );
      if (failed.length > 0) {
        throw new CliError(
          "DEPLOY_FAILED",
          `${failed.length} of ${outcomes.length} functions failed to deploy: ${failed.map((o) => o.name).join(", ")}`,
          { bare: true },
        );
      }
    });
}
