import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { toCliError } from "../errors.js";
import { describePack, packFolder } from "../pack.js";
import { type DeployOptions, folderCommand, readFunctionFolder } from "./deploy.js";
import { formatBytes } from "./images.js";

type BuildOptions = Pick<DeployOptions, "name" | "runtime" | "handler" | "baseImage"> & { cache?: boolean };

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
  folderCommand(
    program,
    "build",
    "build a function folder into a container image (Docker), without deploying it",
  )
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
      // --base-image lands in the spec as for a deploy (its `baseImage`).
      const { folder, name, spec, inferred } = await readFunctionFolder(dir, options, deps.templatesDir);
      if (inferred !== undefined) out.note(inferred);
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
