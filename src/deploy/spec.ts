import { z } from "zod";
import { DEFAULT_MEMORY_MB, PROFILE_NAMES, parseCpu, profileResources } from "../drivers/docker/resources.js";
import { parseDuration } from "../shared/duration.js";
import { MAX_SECRETS_PER_FUNCTION, SECRET_NAME, secretEnvName } from "../shared/secret-names.js";
import { BuildTestSchema } from "./build-tests.js";

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

/**
 * A duration as a user writes it (`30s`, `500ms`, or a bare number of seconds) → milliseconds, or
 * undefined when absent. Only for input: stored specs hold milliseconds and must never come back here.
 */
const durationInput = (maxMs: number) =>
  z
    .union([z.number(), z.string()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
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

const duration = (fallbackMs: number, maxMs: number) =>
  durationInput(maxMs).transform((ms) => ms ?? fallbackMs);

export const RouteSchema = z
  .string()
  .regex(/^\/[A-Za-z0-9._~\-/]*$/, "a route is an absolute path such as /sum")
  .transform((r) => (r.length > 1 ? r.replace(/\/+$/, "") : r))
  .superRefine((r, ctx) => {
    // The gateway matches routes on the raw path: "/./api" or "//api" would never be asked for by a client
    // that normalises, and would shadow or dodge the reserved prefixes for one that does not.
    if (
      r !== "/" &&
      r
        .slice(1)
        .split("/")
        .some((seg) => seg === "" || seg === "." || seg === "..")
    ) {
      ctx.addIssue({
        code: "custom",
        message: `route "${r}" has an empty or dot segment ("//", "/./", "/../"); write the path plainly`,
      });
      return;
    }
    if (r === "/" || RESERVED_PREFIXES.some((p) => r === p || r.startsWith(`${p}/`))) {
      ctx.addIssue({
        code: "custom",
        message: `route "${r}" is reserved for funcd (${RESERVED_PREFIXES.join(", ")} and /)`,
      });
    }
  });

const SCALE_LIMITS = {
  min: z.number().int().min(0).max(100),
  max: z.number().int().min(1).max(100),
  /** Fraction of `concurrency` the autoscaler aims for per instance. */
  targetUtilization: z.number().min(0.05).max(1),
  idleTimeoutMaxMs: 24 * 3_600_000,
  stableWindowMaxMs: 3_600_000,
  panicWindowMaxMs: 600_000,
};

export const ScaleSchema = z
  .object({
    min: SCALE_LIMITS.min.default(0),
    max: SCALE_LIMITS.max.default(10),
    idleTimeout: duration(5 * 60_000, SCALE_LIMITS.idleTimeoutMaxMs),
    /** Fraction of `concurrency` the autoscaler aims for per instance. */
    targetUtilization: SCALE_LIMITS.targetUtilization.default(0.7),
    /** The autoscaler averages concurrency over this window to decide how many instances to keep. */
    stableWindow: duration(60_000, SCALE_LIMITS.stableWindowMaxMs),
    /** A burst seen over this shorter window scales up at once (panic mode). */
    panicWindow: duration(6_000, SCALE_LIMITS.panicWindowMaxMs),
  })
  .prefault({});

/**
 * A live change of scale settings (`PATCH …/scale`, `funcd scale`): only the fields sent, durations
 * turned into milliseconds, no defaults. The result is merged over the stored settings (which are
 * milliseconds already), so a stored value is never parsed again as user input.
 */
export const ScalePatchSchema = z
  .object({
    min: SCALE_LIMITS.min.optional(),
    max: SCALE_LIMITS.max.optional(),
    idleTimeout: durationInput(SCALE_LIMITS.idleTimeoutMaxMs),
    targetUtilization: SCALE_LIMITS.targetUtilization.optional(),
    stableWindow: durationInput(SCALE_LIMITS.stableWindowMaxMs),
    panicWindow: durationInput(SCALE_LIMITS.panicWindowMaxMs),
  })
  .strict()
  .transform((patch) => {
    // Drop what was not sent: under exactOptionalPropertyTypes an explicit undefined would erase a setting.
    const sent: Partial<z.output<typeof ScaleSchema>> = {};
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) Object.assign(sent, { [key]: value });
    }
    return sent;
  });

/**
 * The secrets a function uses, by name: each reaches its instances as a read-only file
 * `/var/secrets/<name>` and an environment variable (see `secretEnvName`). No two may map to one variable.
 */
export const SecretsSchema = z
  .array(
    z
      .string()
      .regex(
        SECRET_NAME,
        "a secret name is letters, digits, '_', '.' and '-', starting with a letter or digit (max 63)",
      ),
  )
  .max(MAX_SECRETS_PER_FUNCTION)
  .superRefine((names, ctx) => {
    const byEnv = new Map<string, string>();
    for (const name of names) {
      const env = secretEnvName(name);
      const other = byEnv.get(env);
      if (other === name) {
        ctx.addIssue({ code: "custom", message: `secret "${name}" is listed twice` });
      } else if (other !== undefined) {
        ctx.addIssue({
          code: "custom",
          message: `secrets "${other}" and "${name}" would both be the environment variable ${env}`,
        });
      }
      byEnv.set(env, name);
    }
  });

/** An image reference as Docker takes it: `name[:tag][@digest]`, with an optional registry/namespace. */
const IMAGE_REF =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/**
 * The spec's fields, before a profile fills in `memory` and `cpu` (see `withResources`). Exported for
 * schemas that extend it; parse specs with `FunctionSpecSchema`.
 */
export const FunctionSpecFields = z.object({
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
  env: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string())
    .superRefine((env, ctx) => {
      // execve cannot carry a NUL and terminals act on escapes: only tab, newline and carriage return pass.
      for (const [name, value] of Object.entries(env)) {
        // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
        const bad = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.exec(value);
        if (bad) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: `env ${name} contains the control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, "0").toUpperCase()}; only tab and newline are accepted`,
          });
        }
      }
    })
    .default({}),
  memory: z
    .number()
    .int()
    .min(32)
    .max(65_536)
    .optional()
    .describe(`memory limit in MiB (default: the profile's, else ${DEFAULT_MEMORY_MB})`),
  cpu: z
    .union([z.number(), z.string()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      try {
        return parseCpu(value);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    })
    .describe(
      'CPU limit in cores (0.5) or millicores ("500m"); default: the profile\'s, else no limit. Docker driver only',
    ),
  profile: z
    .enum(PROFILE_NAMES)
    .optional()
    .describe("a resource preset (Kyma's): fills memory and cpu where they are not given"),
  timeout: duration(30_000, 15 * 60_000).describe("per-invocation timeout"),
  concurrency: z.number().int().min(1).max(1000).optional().describe("requests in flight per instance"),
  routes: z
    .array(RouteSchema)
    .max(32)
    .superRefine((routes, ctx) => {
      const seen = new Set<string>();
      for (const r of routes) {
        if (seen.has(r)) ctx.addIssue({ code: "custom", message: `route "${r}" is listed twice` });
        seen.add(r);
      }
    })
    .default([]),
  scale: ScaleSchema,
  labels: z.record(z.string(), z.string()).default({}),
  annotations: z.record(z.string(), z.string()).default({}),
  network: z
    .enum(["default", "none"])
    .optional()
    .describe(
      "none: the instance may open no connections of its own (docker driver); default: outbound allowed",
    ),
  build: z
    .enum(["image", "none"])
    .optional()
    .describe(
      "docker driver: image (default) builds an image per revision; none runs the runtime's image with the code mounted",
    ),
  baseImage: z
    .string()
    .regex(IMAGE_REF, "an image reference such as node:20-slim")
    .optional()
    .describe("docker driver: build on this base image instead of the template's"),
  secrets: SecretsSchema.optional().describe(
    "names of secrets (funcd secret set) the instances get as /var/secrets/<name> and an env var",
  ),
  secretEnv: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().regex(SECRET_NAME))
    .optional()
    .describe(
      "environment variables set from a secret's value, VAR → secret name (each listed in secrets): how Kyma's and Kubernetes' secretKeyRef env arrives",
    ),
  source: z
    .object({
      git: z.object({
        url: z.string().min(1).describe("https://…, git://…, ssh://… or user@host:path"),
        ref: z.string().min(1).optional().describe("branch, tag or commit (default: the remote's HEAD)"),
        dir: z.string().optional().describe("the function's folder in the repository (default: its root)"),
        secret: z
          .string()
          .regex(SECRET_NAME)
          .optional()
          .describe("a funcd secret holding a token (HTTP) or an SSH private key"),
        commit: z.string().optional().describe("set by funcd: the commit the serving code came from"),
      }),
    })
    .optional()
    .describe(
      "where the code comes from when a deploy sends none: a git repository (funcd sync refetches it)",
    ),
  tests: z
    .array(BuildTestSchema)
    .max(100)
    .optional()
    .describe("requests sent to a new revision before it serves; any failure fails the deploy"),
});

/** The fields `withResources` reads. */
type Resources = Pick<z.output<typeof FunctionSpecFields>, "memory" | "cpu" | "profile">;

/**
 * Fills `memory` and `cpu` from the profile where the spec does not give them (explicit values win),
 * and `memory` with the default when there is neither. A transform rather than a field default because
 * the profile must see whether `memory` was written.
 */
export function withResources<T extends Resources>(spec: T): Omit<T, "memory"> & { memory: number } {
  const profile = spec.profile ? profileResources(spec.profile) : undefined;
  const memory = spec.memory ?? profile?.memoryMb ?? DEFAULT_MEMORY_MB;
  const cpu = spec.cpu ?? profile?.cpus;
  return { ...spec, memory, ...(cpu === undefined ? {} : { cpu }) };
}

/**
 * The function spec users write in `funcd.yaml` and send to the API. It holds no
 * code: code travels next to it (files or an archive) and is stored by hash.
 */
export const FunctionSpecSchema = FunctionSpecFields.transform(withResources);

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

/** The deploy body's fields (spec + code) before the profile is applied; extend this, parse with the schema. */
export const DeployRequestFields = FunctionSpecFields.extend(CodeSchema.shape);
export const DeployRequestSchema = DeployRequestFields.transform(withResources);
export type DeployRequest = z.output<typeof DeployRequestSchema>;

/** Default requests in flight per instance when the spec does not say (Node handles many at once). */
export function defaultConcurrency(spec: FunctionSpec): number {
  return spec.concurrency ?? (spec.runtime.startsWith("python") ? 1 : 50);
}
