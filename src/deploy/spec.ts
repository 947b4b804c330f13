import { z } from "zod";
import { parseDuration } from "../shared/duration.js";

/** Function names become URL segments, log tags and (later) image names and DNS labels. */
export const FUNCTION_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Path prefixes the daemon keeps for itself; custom routes may not claim them. */
export const RESERVED_PREFIXES = [
  "/function",
  "/async-function",
  "/api",
  "/healthz",
  "/metrics",
  "/ui",
] as const;

const duration = (fallbackMs: number, maxMs: number) =>
  z
    .union([z.number(), z.string()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return fallbackMs;
      const ms = parseDuration(value);
      if (ms === undefined || ms <= 0 || ms > maxMs) {
        ctx.addIssue({
          code: "custom",
          message: `"${value}" is not a duration between 1ms and ${maxMs / 1000}s (write e.g. 30s, 500ms, 5m)`,
        });
        return z.NEVER;
      }
      return ms;
    });

export const RouteSchema = z
  .string()
  .regex(/^\/[A-Za-z0-9._~\-/]*$/, "a route is an absolute path such as /sum")
  .transform((r) => (r.length > 1 ? r.replace(/\/+$/, "") : r))
  .superRefine((r, ctx) => {
    if (r === "/" || RESERVED_PREFIXES.some((p) => r === p || r.startsWith(`${p}/`))) {
      ctx.addIssue({
        code: "custom",
        message: `route "${r}" is reserved for funcd (${RESERVED_PREFIXES.join(", ")} and /)`,
      });
    }
  });

/**
 * The function spec users write in `funcd.yaml` and send to the API. It holds no
 * code: code travels next to it (files or an archive) and is stored by hash.
 */
export const FunctionSpecSchema = z.object({
  name: z
    .string()
    .regex(FUNCTION_NAME, "names are lower-case letters, digits and '-', starting with a letter"),
  runtime: z.string().min(1).default("nodejs20"),
  handler: z
    .string()
    .regex(/^[A-Za-z0-9_\-/.]+\.[A-Za-z_$][A-Za-z0-9_$]*$/, "a handler is file.export, e.g. handler.main")
    .default("handler.main"),
  handlerStyle: z
    .enum(["auto", "kubeless", "lambda"])
    .default("auto")
    .describe(
      "kubeless: main(event, context); lambda: AWS payload 2.0 events; auto: lambda when the export is `handler`",
    ),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
  memory: z.number().int().min(32).max(65_536).default(256).describe("memory limit in MiB"),
  timeout: duration(30_000, 15 * 60_000).describe("per-invocation timeout"),
  concurrency: z.number().int().min(1).max(1000).optional().describe("requests in flight per instance"),
  routes: z.array(RouteSchema).max(32).default([]),
  scale: z
    .object({
      min: z.number().int().min(0).max(100).default(0),
      max: z.number().int().min(1).max(100).default(10),
      idleTimeout: duration(5 * 60_000, 24 * 3_600_000),
      /** Fraction of `concurrency` the autoscaler aims for per instance. */
      targetUtilization: z.number().min(0.05).max(1).default(0.7),
      /** The autoscaler averages concurrency over this window to decide how many instances to keep. */
      stableWindow: duration(60_000, 3_600_000),
      /** A burst seen over this shorter window scales up at once (panic mode). */
      panicWindow: duration(6_000, 600_000),
    })
    .prefault({}),
  labels: z.record(z.string(), z.string()).default({}),
  annotations: z.record(z.string(), z.string()).default({}),
});

export type FunctionSpecInput = z.input<typeof FunctionSpecSchema>;
export type FunctionSpec = z.output<typeof FunctionSpecSchema>;

/** Code sent with a deploy: a map of relative path to text (or `{ base64 }`), or a base64 tar.gz. */
export const CodeSchema = z.object({
  files: z
    .record(z.string(), z.union([z.string(), z.object({ base64: z.string() })]))
    .optional()
    .describe("relative path → file content"),
  archive: z.string().optional().describe("base64 of a .tar.gz holding the function folder"),
});

export const DeployRequestSchema = FunctionSpecSchema.extend(CodeSchema.shape);
export type DeployRequest = z.output<typeof DeployRequestSchema>;

/** Default requests in flight per instance when the spec does not say (Node handles many at once). */
export function defaultConcurrency(spec: FunctionSpec): number {
  return spec.concurrency ?? (spec.runtime.startsWith("python") ? 1 : 50);
}
