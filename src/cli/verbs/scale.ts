import { type Command, InvalidArgumentError } from "commander";
import { duration, integer } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { toCliError, usageError } from "../errors.js";
import { type FunctionView, formatScale } from "../views.js";

interface ScaleOptions {
  min?: number;
  max?: number;
  idleTimeout?: string;
  targetUtilization?: number;
  stableWindow?: string;
  panicWindow?: string;
}

/** Flag → field of the PATCH body; durations go as the user wrote them (the daemon parses them once). */
const FIELDS = ["min", "max", "idleTimeout", "targetUtilization", "stableWindow", "panicWindow"] as const;

function fraction(value: string): number {
  const n = Number(value);
  if (!/^\s*\d*\.?\d+\s*$/.test(value) || n < 0.05 || n > 1) {
    throw new InvalidArgumentError(`expected a fraction between 0.05 and 1, got "${value}"`);
  }
  return n;
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("scale")
    .description("change how many instances a function may run, without a new revision")
    .argument("<name>", "function name")
    .option("--min <n>", "instances kept running (0 = scale to zero)", integer(0, 100))
    .option("--max <n>", "instances at most", integer(1, 100))
    .option("--idle-timeout <duration>", "stop an idle instance after, e.g. 5m", duration)
    .option(
      "--target-utilization <fraction>",
      "share of an instance's concurrency the autoscaler aims for, e.g. 0.7",
      fraction,
    )
    .option("--stable-window <duration>", "the autoscaler averages load over this window, e.g. 60s", duration)
    .option(
      "--panic-window <duration>",
      "a burst over this shorter window scales up at once, e.g. 6s",
      duration,
    )
    .addHelpText(
      "after",
      "\nOnly the settings you pass change. Examples:\n  $ funcd scale sum --min 1 --max 4\n  $ funcd scale sum --idle-timeout 30s",
    )
    .action(async (name: string, options: ScaleOptions, command: Command) => {
      const ctx = contextFor(command, deps);
      const body: Record<string, string | number> = {};
      for (const field of FIELDS) {
        const value = options[field];
        if (value !== undefined) body[field] = value;
      }
      if (Object.keys(body).length === 0) {
        throw usageError(
          "Nothing to change: pass --min, --max, --idle-timeout, --target-utilization, --stable-window or --panic-window",
        );
      }
      if (options.min !== undefined && options.max !== undefined && options.min > options.max) {
        throw usageError(`--min ${options.min} is above --max ${options.max}`);
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
