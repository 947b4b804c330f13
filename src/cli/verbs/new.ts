import { relative, resolve } from "node:path";
import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { newFunction } from "../scaffold.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("new")
    .description("create a function folder from a runtime's scaffold")
    .argument("<name>", "function name (also the folder's name)")
    .option("--runtime <runtime>", "runtime template to start from", "nodejs20")
    .option("--dir <dir>", "where to create the folder", ".")
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd new hello\n  $ funcd new sum --runtime nodejs20 --dir examples",
    )
    .action(async (name: string, options: { runtime: string; dir: string }, command: Command) => {
      const { out } = contextFor(command, deps);
      const created = await newFunction({
        name,
        runtime: options.runtime,
        dir: resolve(options.dir),
        templatesDir: deps.templatesDir,
      });
      const rel = relative(process.cwd(), created.path);
      const shown = rel.startsWith("..") || rel === "" ? created.path : `./${rel}`;
      out.result({ path: created.path, files: created.files, runtime: created.runtime }, () => {
        out.line(`Created ${shown} (${created.runtime}): ${created.files.join(", ")}`);
        out.line();
        out.line("Next:");
        out.line(`  funcd deploy ${shown}`);
        out.line(`  funcd invoke ${name} --data '{"name": "you"}'`);
      });
    });
}
