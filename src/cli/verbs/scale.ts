import type { Command } from "commander";
import { duration, integer } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { toCliError, usageError } from "../errors.js";
import { type FunctionView, formatScale } from "../views.js";

interface ScaleOptions {
  min?: number;
  max?: number;
  idleTimeout?: string;
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("scale")
    .description("change how many instances a function may run, without a new revision")
    .argument("<name>", "function name")
    .option("--min <n>", "instances kept running (0 = scale to zero)", integer(0, 100))
    .option("--max <n>", "instances at most", integer(1, 100))
    .option("--idle-timeout <duration>", "stop an idle instance after, e.g. 5m", duration)
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd scale sum --min 1 --max 4\n  $ funcd scale sum --idle-timeout 30s",
    )
    .action(async (name: string, options: ScaleOptions, command: Command) => {
      const ctx = contextFor(command, deps);
      const body = {
        ...(options.min === undefined ? {} : { min: options.min }),
        ...(options.max === undefined ? {} : { max: options.max }),
        ...(options.idleTimeout === undefined ? {} : { idleTimeout: options.idleTimeout }),
      };
      if (Object.keys(body).length === 0)
        throw usageError("Nothing to change: pass --min, --max or --idle-timeout");
      if (body.min !== undefined && body.max !== undefined && body.min > body.max) {
        throw usageError(`--min ${body.min} is above --max ${body.max}`);
      }
      let fn: FunctionView;
      try {
        fn = await ctx
          .client()
          .call<FunctionView>("PATCH", `/api/v1/functions/${encodeURIComponent(name)}/scale`, body);
      } catch (err) {
        const error = toCliError(err);
        // A 404/405 without FUNCTION_NOT_FOUND means the route itself is missing: an older daemon.
        if (error.code === "NOT_FOUND" || error.code === "METHOD_NOT_ALLOWED") {
          throw error.withHint(
            "This daemon does not support scaling yet; set scale: in the spec and redeploy.",
          );
        }
        throw error;
      }
      ctx.out.result(fn, () =>
        ctx.out.line(`Scaled ${name}: ${fn.scale ? formatScale(fn.scale) : JSON.stringify(body)}`),
      );
    });
}
