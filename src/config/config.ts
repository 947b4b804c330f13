import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseDuration } from "../shared/duration.js";
import { FuncdError } from "../shared/errors.js";
import type { ListenerSetting } from "../shared/listen.js";
import { defaultDataDir } from "./data-dir.js";

export { defaultDataDir, ROOT_DATA_DIR } from "./data-dir.js";

/** The package root: dist/config/ and src/config/ both sit two levels below it. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

const MiB = 1024 * 1024;

/**
 * One schema for the config file, FUNCD_* variables and flags. Every key has a
 * default, so an empty config is a working laptop setup.
 */
export const ConfigSchema = z.object({
  port: z.coerce.number().int().min(0).max(65_535).default(8080),
  /**
   * The admin listener's port: console, API and docs on an origin no function serves from (default: `port`
   * + 1; 0 with `port` 0 picks a free one). See src/app-listeners.ts.
   */
  adminPort: z.coerce.number().int().min(0).max(65_535).optional(),
  host: z.string().min(1).default("127.0.0.1"),
  dataDir: z.string().min(1),
  token: z.string().min(16, "a token needs at least 16 characters").optional(),
  /**
   * Where instances run: `process` (sandboxed local processes, the default), `docker` (a container
   * per instance on a Docker engine, each revision built into an image) or `swarm` (Swarm services on
   * a Docker Swarm whose manager is the engine, images through `registry`).
   */
  driver: z.enum(["process", "docker", "swarm"]).default("process"),
  sandbox: z.enum(["auto", "bwrap", "none"]).default("auto"),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  templatesDir: z.string().default(path.join(PACKAGE_ROOT, "templates")),
  /** Largest invocation request body, in bytes (413 above). */
  maxBodyBytes: z.coerce
    .number()
    .int()
    .positive()
    .default(6 * MiB),
  /** Largest code upload (archive or files), in bytes. */
  maxCodeBytes: z.coerce
    .number()
    .int()
    .positive()
    .default(50 * MiB),
  /** Largest memory a function may ask for, in MiB. */
  maxMemoryMb: z.coerce.number().int().min(32).default(4096),
  /** How long a request may wait for an instance to become ready before a 503. */
  coldStartWaitMs: z.coerce.number().int().positive().default(30_000),
  /** Requests that may wait for an instance per function; more get 429. */
  maxQueuedPerFunction: z.coerce.number().int().positive().default(1000),
  /** Memory (MiB) all instances together may reserve (default: 75 % of this machine's memory). */
  maxReservedMemoryMb: z.coerce
    .number()
    .int()
    .positive()
    .default(Math.floor((os.totalmem() / 1024 / 1024) * 0.75)),
  /** How often idle instances are health-checked (0: never). */
  healthCheckIntervalMs: z.coerce.number().int().min(0).default(10_000),
  /** Keep a record of every sync invocation (turn off only to measure what recording costs). */
  recordExecutions: z
    .union([z.boolean(), z.enum(["true", "false", "1", "0"])])
    .default(true)
    .transform((v) => v === true || v === "true" || v === "1"),
  /** Execution records older than this are pruned (ms; default 7 days). */
  executionRetentionMs: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3_600_000),
  /** At most this many execution records are kept per function. */
  executionsPerFunction: z.coerce.number().int().positive().default(10_000),
  /** Log lines kept per function. */
  logsPerFunction: z.coerce.number().int().positive().default(5000),
  // Async invocations (src/queue/).
  /** Async deliveries in flight across all functions, at most. */
  asyncWorkers: z.coerce.number().int().min(1).max(1000).default(32),
  /** Async deliveries in flight per function, at most. */
  asyncConcurrencyPerFunction: z.coerce.number().int().min(1).max(1000).default(10),
  /** Retries after a failed first attempt (a request's `X-Funcd-Retries` overrides it). */
  asyncRetries: z.coerce.number().int().min(0).max(10).default(2),
  /** First retry waits up to this long; each further one up to twice as long (full jitter). */
  asyncBackoffBaseMs: z.coerce.number().int().min(1).default(1000),
  /** Longest wait between two attempts. */
  asyncBackoffCapMs: z.coerce.number().int().min(1).default(300_000),
  /** An async invocation older than this (since enqueue or redrive) is dead-lettered, not attempted again. */
  maxEventAgeMs: z.coerce
    .number()
    .int()
    .min(1)
    .default(6 * 3_600_000),
  /** Retries of a failed callback to an `X-Callback-Url`. */
  callbackRetries: z.coerce.number().int().min(0).max(10).default(3),
  /** How long a callback URL has to answer. */
  callbackTimeoutMs: z.coerce.number().int().positive().default(10_000),
  // ── docker (src/drivers/docker/, src/builder/image/) ──────────────────────
  /**
   * How long an image no revision uses is kept after its build or last use, before the image garbage
   * collector removes it (`14d`, `12h`; a bare number is seconds).
   */
  imageRetention: z
    .union([z.number(), z.string()])
    .default("14d")
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined || ms <= 0) {
        ctx.addIssue({ code: "custom", message: `"${value}" is not a duration (write e.g. 14d, 12h)` });
        return z.NEVER;
      }
      return ms;
    }),
  /** The bridge network docker instances join (created when missing). */
  dockerNetwork: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, "a Docker network name")
    .default("funcd"),
  /**
   * The registry images are pushed to for the swarm driver (`host:port`, e.g. `127.0.0.1:5000`): every
   * node pulls the same image from it, by digest. Required with `driver: swarm`.
   */
  registry: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[a-z0-9._/-]+)?$/, "a registry as host:port (optionally /path)")
    .optional(),
  /** Stack file deployed at start-up (`funcd server --up funcd.yaml`). */
  up: z.string().optional(),

  // ── warm pool (src/scaler/pool.ts) ─────────────────────────────────────────
  /**
   * Generic instances kept ready per runtime in use (a runtime no function uses gets none); a cold start
   * specializes one instead of booting a runtime. 0 turns the pool off (`FUNCD_POOL_SIZE=0`).
   */
  poolSize: z.coerce.number().int().min(0).max(64).default(2),
  /**
   * The memory limit (MiB) pool instances boot with: only functions with exactly this limit start from
   * the pool (the default matches a function's default memory).
   */
  poolMemoryMb: z.coerce.number().int().min(32).default(256),
});

export type Config = Readonly<Omit<z.output<typeof ConfigSchema>, "adminPort"> & { adminPort: number }>;

/** Flag / file key → FUNCD_ variable name: `dataDir` → `FUNCD_DATA_DIR`. */
export function envName(key: string): string {
  return `FUNCD_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export interface ConfigSources {
  /** Values from command-line flags (already named like schema keys). */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Path of a YAML/JSON config file; `FUNCD_CONFIG` when not given. */
  file?: string;
}

/**
 * Parses config once: defaults < file < FUNCD_* env < flags. Fails listing
 * every problem at once, and freezes the result.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const merged: Record<string, unknown> = { dataDir: defaultDataDir(env) };
  const file = sources.file ?? env.FUNCD_CONFIG;
  if (file) Object.assign(merged, readConfigFile(file));
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[envName(key)];
    if (value !== undefined && value !== "") merged[key] = value;
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value !== undefined) merged[key] = value;
  }
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (i) => `${i.path.join(".") || "(root)"} (${envName(String(i.path[0] ?? ""))}): ${i.message}`,
    );
    // The list goes in `errors` only: the CLI prints it under the title, and a detail holding it too
    // printed every problem twice.
    const count = problems.length === 1 ? "1 setting is" : `${problems.length} settings are`;
    throw new FuncdError(
      "CONFIG_INVALID",
      `${count} not valid (set by a flag, a FUNCD_* variable or the config file${file ? ` ${file}` : ""}):`,
      { extra: { errors: problems } },
    );
  }
  const { port } = parsed.data;
  const adminPort = parsed.data.adminPort ?? (port === 0 ? 0 : port + 1);
  if (adminPort > 65_535 || (adminPort !== 0 && adminPort === port)) {
    const problem = `adminPort (FUNCD_ADMIN_PORT): the admin listener needs a port of its own, not ${adminPort} (port is ${port}); set --admin-port`;
    throw new FuncdError(
      "CONFIG_INVALID",
      `1 setting is not valid (set by a flag, a FUNCD_* variable or the config file${file ? ` ${file}` : ""}):`,
      { extra: { errors: [problem] } },
    );
  }
  const config = { ...parsed.data, adminPort, dataDir: path.resolve(parsed.data.dataDir) };
  return Object.freeze(config);
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new FuncdError("CONFIG_INVALID", `Cannot read config file ${file}: ${(err as Error).message}`);
  }
  const value: unknown = parseYaml(text);
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new FuncdError("CONFIG_INVALID", `Config file ${file} must hold a mapping of settings`);
  }
  return value as Record<string, unknown>;
}

/** The admin listener's address (console, API, docs) and the settings that choose it. */
export function adminListener(config: Config): ListenerSetting {
  return {
    what: "the admin listener (console, API, docs)",
    host: config.host,
    port: config.adminPort,
    flag: "--admin-port",
    env: "FUNCD_ADMIN_PORT",
  };
}

/** The gateway/API listener's address and the settings that choose it, for start-up problems. */
export function gatewayListener(config: Config): ListenerSetting {
  return {
    what: "the gateway and API",
    host: config.host,
    port: config.port,
    flag: "--port",
    env: "FUNCD_PORT",
  };
}
