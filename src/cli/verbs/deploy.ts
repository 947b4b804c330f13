import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { fittingRuntimes, type RuntimeFit, RuntimeRegistry } from "../../builder/runtimes.js";
import { FUNCTION_NAME } from "../../deploy/spec.js";
import { collect, duration, integer, keyValue } from "../args.js";
import type { ApiClient } from "../client.js";
import { type CliDeps, contextFor } from "../context.js";
import { type DeployJob, deployFunction } from "../deployer.js";
import { toCliError, usageError } from "../errors.js";
import type { Output } from "../output.js";
import { folderName, readFolderDefaults, type SpecFields } from "../stack.js";
import { watchFolder } from "../watch.js";

/** The flags of `funcd deploy` (`funcd build` takes some of them). */
export interface DeployOptions {
  name?: string;
  runtime?: string;
  handler?: string;
  route?: string[];
  env?: Record<string, string>;
  memory?: number;
  timeout?: string;
  concurrency?: number;
  min?: number;
  max?: number;
  idleTimeout?: string;
  profile?: string;
  cpu?: string;
  buildless?: boolean;
  baseImage?: string;
  secret?: string[];
  watch?: boolean;
}

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};

/** Flags over the folder's spec file: scalar flags replace, `--env` merges, `--route` replaces the list. */
export function mergeSpec(defaults: SpecFields, options: DeployOptions): SpecFields {
  const spec: SpecFields = { ...defaults };
  if (options.runtime !== undefined) spec.runtime = options.runtime;
  if (options.handler !== undefined) spec.handler = options.handler;
  if (options.memory !== undefined) spec.memory = options.memory;
  if (options.timeout !== undefined) spec.timeout = options.timeout;
  if (options.concurrency !== undefined) spec.concurrency = options.concurrency;
  if (options.profile !== undefined) spec.profile = options.profile;
  if (options.cpu !== undefined)
    spec.cpu = /^\d+(\.\d+)?$/.test(options.cpu) ? Number(options.cpu) : options.cpu;
  if (options.buildless) spec.build = "none";
  if (options.baseImage !== undefined) spec.baseImage = options.baseImage;
  if (options.route && options.route.length > 0) spec.routes = options.route;
  if (options.env) spec.env = { ...asRecord(defaults.env), ...options.env };
  if (options.secret && options.secret.length > 0) {
    const listed = Array.isArray(defaults.secrets) ? (defaults.secrets as string[]) : [];
    spec.secrets = [...new Set([...listed, ...options.secret])];
  }
  if (options.min !== undefined || options.max !== undefined || options.idleTimeout !== undefined) {
    spec.scale = {
      ...asRecord(defaults.scale),
      ...(options.min === undefined ? {} : { min: options.min }),
      ...(options.max === undefined ? {} : { max: options.max }),
      ...(options.idleTimeout === undefined ? {} : { idleTimeout: options.idleTimeout }),
    };
  }
  return spec;
}

/**
 * The function a folder argument names (`funcd deploy|build [dir]`): its absolute path, its name
 * (`--name`, else the folder's spec file, else the folder's name) and its spec (the flags over the
 * folder's spec file, see `mergeSpec`). Fails with a usage error when the name is not a function name.
 */
export async function readFunctionFolder(
  dir: string,
  options: DeployOptions,
  templatesDir?: string,
): Promise<{ folder: string; name: string; spec: SpecFields; inferred?: string }> {
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
  const spec = mergeSpec(defaults?.spec ?? {}, options);
  if (spec.runtime !== undefined || templatesDir === undefined) return { folder, name, spec };
  const fit = inferRuntime(folder, templatesDir, typeof spec.handler === "string" ? spec.handler : undefined);
  if (fit === undefined) return { folder, name, spec };
  return {
    folder,
    name,
    spec: { ...spec, runtime: fit.template.runtime },
    inferred: `runtime ${fit.template.runtime} (from ${fit.file}; pass --runtime to choose another)`,
  };
}

/**
 * The runtime a folder's files say, when neither a flag nor its spec file names one: the one runtime
 * whose handler file (else dependency file) is there, from the local templates. None or several: the
 * daemon's default applies.
 */
function inferRuntime(
  folder: string,
  templatesDir: string,
  handler: string | undefined,
): RuntimeFit | undefined {
  const fits = fittingRuntimes(
    new RuntimeRegistry(templatesDir).templates(),
    (file) => existsSync(join(folder, file)),
    handler,
  );
  return fits.length === 1 ? fits[0] : undefined;
}

/** `funcd <verb> [dir]` with the flags that name the function and its runtime (`deploy`, `build`). */
export function folderCommand(program: Command, verb: string, description: string): Command {
  return program
    .command(verb)
    .description(description)
    .argument("[dir]", "the function folder", ".")
    .option(
      "-n, --name <name>",
      "function name (default: from funcd.yaml in the folder, else the folder's name)",
    )
    .option(
      "--runtime <runtime>",
      "runtime, e.g. nodejs20, python3 (default: the folder's funcd.yaml, else its files: handler.py → python3)",
    )
    .option("--handler <file.export>", "handler, e.g. handler.main (default handler.main)");
}

export function register(program: Command, deps: CliDeps): void {
  folderCommand(
    program,
    "deploy",
    "pack a function folder and deploy it (a new revision when anything changed)",
  )
    .option("--route <path>", "extra public path, e.g. /sum (repeatable)", collect)
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", keyValue)
    .option(
      "--secret <name>",
      "a secret (funcd secret set) as /var/secrets/<name> and env var (repeatable)",
      collect,
    )
    .option("--memory <MiB>", "memory limit in MiB", integer(32, 65_536))
    .option("--timeout <duration>", "per-invocation timeout, e.g. 30s", duration)
    .option("--concurrency <n>", "requests in flight per instance", integer(1, 1000))
    .option("--profile <size>", "resource preset XS | S | M | L | XL (memory and CPU, as Kyma's)")
    .option("--cpu <cores>", 'CPU limit in cores or millicores, e.g. 0.5 or "500m" (docker driver)')
    .option("--buildless", "docker driver: no image build; run the runtime's image with the code mounted")
    .option("--base-image <image>", "docker driver: build on this base image instead of the template's")
    .option("--min <n>", "instances kept running", integer(0, 100))
    .option("--max <n>", "instances at most", integer(1, 100))
    .option("--idle-timeout <duration>", "stop idle instances after, e.g. 5m", duration)
    .option("-w, --watch", "keep watching the folder and redeploy on every change (Ctrl-C to stop)")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd deploy ./sum
  $ funcd deploy ./sum --name adder --route /add --env GREETING=hi --timeout 10s
  $ funcd deploy . --min 1 --max 5
  $ funcd deploy ./sum --watch          # hot reload while you edit
  $ funcd deploy ./sum --buildless      # docker driver: code mounted, no image build

A funcd.yaml or function.yaml in the folder gives defaults; flags win.`,
    )
    .action(async (dir: string, options: DeployOptions, command: Command) => {
      const ctx = contextFor(command, deps);
      const { folder, name, spec, inferred } = await readFunctionFolder(dir, options, deps.templatesDir);
      if (inferred !== undefined) ctx.out.note(inferred);
      const job = { name, dir: folder, spec };
      if (!options.watch) {
        const result = await deployFunction(ctx.out, ctx.client(), job);
        if (ctx.out.json) ctx.out.data(result);
        return;
      }
      await watchAndDeploy(ctx.out, ctx.client(), job, deps);
    });
}

/**
 * `--watch`: deploy now, then again after every burst of changes. A failed
 * deploy is reported and watching goes on — the previous revision keeps
 * serving until the code loads again. Deploys never overlap: changes during
 * one are folded into the next.
 */
async function watchAndDeploy(out: Output, client: ApiClient, job: DeployJob, deps: CliDeps): Promise<void> {
  const once = async () => {
    try {
      await deployFunction(out, client, job);
    } catch (err) {
      out.error(toCliError(err));
    }
  };
  await once();
  out.note(`Watching ${job.dir} for changes (Ctrl-C to stop)…`);
  let running: Promise<void> | null = null;
  let again = false;
  const trigger = () => {
    if (running) {
      again = true;
      return;
    }
    running = once().finally(() => {
      running = null;
      if (again) {
        again = false;
        trigger();
      }
    });
  };
  await new Promise<void>((resolve) => {
    const stopWatching = watchFolder(job.dir, trigger);
    const stopInterrupt = deps.onInterrupt(() => {
      stopWatching();
      stopInterrupt();
      resolve();
    });
  });
}
