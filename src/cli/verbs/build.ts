import { resolve } from "node:path";
import type { Command } from "commander";
import { FUNCTION_NAME } from "../../deploy/spec.js";
import { type CliDeps, contextFor } from "../context.js";
import { toCliError, usageError } from "../errors.js";
import { describePack, packFolder } from "../pack.js";
import { folderName, readFolderDefaults } from "../stack.js";
import { mergeSpec } from "./deploy.js";
import { formatBytes } from "./images.js";

interface BuildOptions {
  name?: string;
  runtime?: string;
  handler?: string;
  cache?: boolean;
  baseImage?: string;
}

/** What `POST /api/v1/builds` answers. */
export interface BuildView {
  function: string;
  runtime: string;
  tag: string;
  cached: boolean;
  durationMs: number;
  sizeBytes: number;
  log?: string[];
  run: string;
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("build")
    .description("build a function folder into a container image (Docker), without deploying it")
    .argument("[dir]", "the function folder", ".")
    .option(
      "-n, --name <name>",
      "function name (default: from funcd.yaml in the folder, else the folder's name)",
    )
    .option("--runtime <runtime>", "runtime, e.g. nodejs20 (default nodejs20)")
    .option("--handler <file.export>", "handler, e.g. handler.main (default handler.main)")
    .option("--no-cache", "build again even when an image of the same code and settings exists")
    .option("--base-image <image>", "build FROM this image instead of the runtime's default")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd build ./hello
  $ funcd build ./hello --no-cache
  $ funcd build ./hello --base-image node:20-slim
  $ docker run -p 8080:8080 funcd/hello:<hash>   # the image serves on its own

The image is tagged funcd/<name>:<hash of code, dependencies and settings>; an unchanged
folder finds its image again at once. The daemon builds it on its Docker engine.`,
    )
    .action(async (dir: string, options: BuildOptions, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const folder = resolve(dir);
      const defaults = await readFolderDefaults(folder, options.name);
      const name = options.name ?? defaults?.name ?? folderName(folder);
      if (!FUNCTION_NAME.test(name)) {
        throw usageError(
          `"${name}" is not a function name: use lower-case letters, digits and '-', starting with a letter`,
          options.name === undefined
            ? "The name comes from the folder; pass --name to choose another."
            : undefined,
        );
      }
      const spec = mergeSpec(defaults?.spec ?? {}, {
        ...(options.runtime === undefined ? {} : { runtime: options.runtime }),
        ...(options.handler === undefined ? {} : { handler: options.handler }),
      });
      const task = out.task(`${name}: packing ${folder}`);
      let result: BuildView;
      try {
        const packed = await packFolder(folder);
        task.update(`${name}: uploading ${describePack(packed)} and building its image`);
        result = await client().progressCall<BuildView>(
          "POST",
          "/api/v1/builds",
          {
            ...spec,
            ...(options.baseImage === undefined ? {} : { baseImage: options.baseImage }),
            name,
            archive: packed.archive.toString("base64"),
            noCache: options.cache === false,
          },
          (message) => task.update(`${name}: ${message}`),
          { title: "Build outcome unknown", hint: "Check with `funcd images`." },
        );
      } catch (err) {
        const error = toCliError(err);
        task.fail(`${name}: ${error.title}`);
        throw error;
      }
      const seconds = (result.durationMs / 1000).toFixed(result.durationMs < 1000 ? 2 : 1);
      task.succeed(
        result.cached
          ? `${name}: image ${result.tag} is up to date (cached, ${seconds} s, ${formatBytes(result.sizeBytes)})`
          : `${name}: built ${result.tag} in ${seconds} s (${formatBytes(result.sizeBytes)})`,
      );
      out.result(result, () => out.line(`Run it: ${result.run}`));
    });
}
