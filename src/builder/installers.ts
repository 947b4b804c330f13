/**
 * The package managers behind dependency installs — npm for `package.json`, pip for `requirements.txt` —
 * and how one install runs: an explicit environment, an unprivileged uid when the daemon is root, its own
 * process group, a timeout, output line by line. Which installer a runtime uses follows from its
 * template's `dependencyFile`, so nothing here is chosen by language name.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { readLines } from "../drivers/process/output.js";
import { dropPrivilegesArgs } from "../drivers/process/sandbox.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError } from "../shared/errors.js";
import { compileInstaller, type TemplateCompile } from "./compile.js";

/** One package manager, described by what it needs from the function and how it is run. */
export interface Installer {
  /** Short name for messages: `npm exited with 1`. */
  tool: string;
  /** The template's `dependencyFile` this installer serves. */
  dependencyFile: string;
  /** Other function files that steer the install when present (lock files, `.npmrc`). */
  companions: readonly string[];
  /** The folder the install produces, placed at the function root of each artifact. */
  target: string;
  /** Part of the cache key besides the files: what makes an install differ for the same files. */
  flavour: string;
  /** Whether the dependency file asks for anything at all (a `package.json` may only set `"type"`). */
  needsInstall(content: string): boolean;
  /**
   * Relative paths (files or folders, POSIX, as written) the dependency file points at, e.g. a local
   * package. `read` gives another function file's text (for nested requirement files).
   */
  localPaths(content: string, read: (file: string) => string | undefined): string[];
  /** How the command is shown in progress messages: `npm ci`. */
  label(present: ReadonlySet<string>): string;
  /** The command line, run in the work folder (a copy of the files that make the key). */
  command(input: { workDir: string; targetDir: string; present: ReadonlySet<string> }): string[];
  /** Environment variables of the daemon passed on to the install (registry, proxy and index settings). */
  passEnv(name: string): boolean;
  /** Runs even without the dependency file (a compile: the function's own files are its input). */
  always?: boolean;
  /** Variables written over the install's base environment (a compile's PATH). */
  env?: Record<string, string>;
  /** Fails with a clear error before running when the host lacks what the install needs. */
  check?(): Promise<void>;
}

const PROXY_VARS = new Set(["https_proxy", "http_proxy", "no_proxy", "all_proxy"]);

/**
 * `npm_config_*` variables npm itself sets for scripts it runs (`npm start` → funcd): they name the
 * *daemon's* project and home, and would point the install at them.
 */
const NPM_OWN_CONFIG = new Set(
  [
    "cache",
    "prefix",
    "local_prefix",
    "global_prefix",
    "globalconfig",
    "userconfig",
    "init_module",
    "node_gyp",
    "user_agent",
    "npm_version",
  ].map((k) => `npm_config_${k}`),
);

function npmCli(): string[] {
  // Run npm with the daemon's own node: no PATH lookup, no shim that reads the daemon's environment.
  const cli = path.join(
    path.dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "bin",
    "npm-cli.js",
  );
  return existsSync(cli) ? [process.execPath, cli] : ["npm"];
}

const DEPENDENCY_FIELDS = ["dependencies", "optionalDependencies", "peerDependencies"] as const;

function parsePackageJson(content: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch (err) {
    throw new FuncdError("DEPLOY_FAILED", `package.json is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new FuncdError("DEPLOY_FAILED", "package.json must hold a JSON object");
  }
  return parsed as Record<string, unknown>;
}

function specsOf(pkg: Record<string, unknown>, fields: readonly string[]): string[] {
  const out: string[] = [];
  for (const field of fields) {
    const deps = pkg[field];
    if (typeof deps !== "object" || deps === null) continue;
    for (const spec of Object.values(deps)) if (typeof spec === "string") out.push(spec);
  }
  return out;
}

/** `ci` installs exactly the lock file (and fails when it disagrees with package.json). */
function npmVerb(present: ReadonlySet<string>): "ci" | "install" {
  return present.has("package-lock.json") || present.has("npm-shrinkwrap.json") ? "ci" : "install";
}

export const npmInstaller: Installer = {
  tool: "npm",
  dependencyFile: "package.json",
  companions: ["package-lock.json", "npm-shrinkwrap.json", ".npmrc"],
  target: "node_modules",
  // Native addons are built for one Node ABI.
  flavour: `node-abi-${process.versions.modules}`,
  needsInstall: (content) => specsOf(parsePackageJson(content), DEPENDENCY_FIELDS).length > 0,
  localPaths(content) {
    const pkg = parsePackageJson(content);
    const specs = specsOf(pkg, [...DEPENDENCY_FIELDS, "devDependencies"]);
    return specs.flatMap((spec) => {
      const local =
        /^(?:file|link):(.*)$/.exec(spec)?.[1] ?? (/^\.\.?(?:\/|$)/.test(spec) ? spec : undefined);
      return local === undefined ? [] : [local];
    });
  },
  label: (present) => `npm ${npmVerb(present)}`,
  command({ present }) {
    return [
      ...npmCli(),
      npmVerb(present),
      "--omit=dev",
      "--no-audit",
      "--no-fund",
      "--no-update-notifier",
      // `http` shows each fetch: enough to see progress, little enough to read.
      "--loglevel=http",
    ];
  },
  passEnv(name) {
    const lower = name.toLowerCase();
    return PROXY_VARS.has(lower) || (lower.startsWith("npm_config_") && !NPM_OWN_CONFIG.has(lower));
  },
};

/** Options of a requirements file whose value is a path (a nested file or a folder of archives). */
const PIP_PATH_OPTIONS = new Set([
  "-r",
  "--requirement",
  "-c",
  "--constraint",
  "-e",
  "--editable",
  "-f",
  "--find-links",
]);
const PIP_FILE_OPTIONS = new Set(["-r", "--requirement", "-c", "--constraint"]);
const ARCHIVE = /\.(?:whl|zip|tar\.gz|tgz|tar\.bz2|tar)$/;

/** Requirement lines with comments, continuations and blank lines removed. */
function requirementLines(content: string): string[] {
  return content
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((line) => line.replace(/(^|\s)#.*$/, "").trim())
    .filter((line) => line !== "");
}

/** A requirement token as a local path, or undefined when it names a package, a URL or an absolute path. */
function pipLocalPath(token: string): string | undefined {
  let value = token.replace(/#.*$/, "");
  if (value.startsWith("file:")) value = value.slice("file:".length);
  else if (/^[a-z][a-z0-9+.-]*:/i.test(value)) return undefined;
  value = value.replace(/\[[^\]]*\]$/, "");
  if (value === "" || value.startsWith("/")) return undefined;
  return value.startsWith(".") || value.includes("/") || ARCHIVE.test(value) ? value : undefined;
}

function pipReferences(
  content: string,
  base: string,
  read: (file: string) => string | undefined,
  depth = 0,
): string[] {
  const out: string[] = [];
  for (const line of requirementLines(content)) {
    const tokens = line.split(/\s+/);
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i] as string;
      // `--requirement=x` and `--requirement x` are the same option.
      const eq = token.startsWith("--") ? token.indexOf("=") : -1;
      const option = eq === -1 ? token : token.slice(0, eq);
      if (PIP_PATH_OPTIONS.has(option)) {
        const value = (eq === -1 ? tokens[++i] : token.slice(eq + 1))?.replace(/^file:(?!\/)/, "");
        // An option's value is a path even without a slash (`-r base.txt`), unless it is a URL.
        const local =
          value === undefined ? undefined : pipLocalPath(value.includes("/") ? value : `./${value}`);
        if (local === undefined) continue;
        const file = path.posix.join(base, local);
        out.push(file);
        const nested = PIP_FILE_OPTIONS.has(option) && depth < 8 ? read(file) : undefined;
        if (nested !== undefined)
          out.push(...pipReferences(nested, path.posix.dirname(file), read, depth + 1));
        continue;
      }
      if (token.startsWith("-")) continue;
      const local = pipLocalPath(token);
      if (local !== undefined) out.push(path.posix.join(base, local));
    }
  }
  return out;
}

export const pipInstaller: Installer = {
  tool: "pip",
  dependencyFile: "requirements.txt",
  companions: [],
  target: ".python_packages",
  flavour: "pip-target",
  needsInstall: (content) => requirementLines(content).length > 0,
  localPaths: (content, read) => pipReferences(content, ".", read),
  label: () => "pip install -r requirements.txt",
  command({ targetDir }) {
    const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    return [
      python,
      "-m",
      "pip",
      "install",
      "--target",
      targetDir,
      "-r",
      "requirements.txt",
      "--no-input",
      "--disable-pip-version-check",
      "--no-warn-script-location",
      // Build local packages with the system's setuptools: an isolated build env would fetch setuptools
      // from an index, which may be unreachable. Packages with other build backends need them installed.
      "--no-build-isolation",
    ];
  },
  passEnv(name) {
    const lower = name.toLowerCase();
    return PROXY_VARS.has(lower) || (name.startsWith("PIP_") && name !== "PIP_CACHE_DIR");
  },
};

const INSTALLERS: readonly Installer[] = [npmInstaller, pipInstaller];

/**
 * The installer of a template: its compile (a template with a `compile:` section), else the package
 * manager of its dependency file, or undefined when funcd has none for it.
 */
export function installerFor(template: {
  runtime: string;
  dir?: string;
  dependencyFile?: string | undefined;
  compile?: TemplateCompile | undefined;
}): Installer | undefined {
  if (template.compile !== undefined && template.dir !== undefined) {
    return compileInstaller({ ...template, dir: template.dir, compile: template.compile });
  }
  return INSTALLERS.find((i) => i.dependencyFile === template.dependencyFile);
}

/** How one install process runs. */
export interface RunInput {
  argv: string[];
  cwd: string;
  /** Written over the passed-through variables. */
  env: Record<string, string>;
  installer: Installer;
  /** Run as this uid (and gid) through setpriv; undefined runs as the daemon's own user. */
  uid: number | undefined;
  setpriv: string | undefined;
  timeoutMs: number;
  clock: Pick<Clock, "setTimeout">;
  onLine: (line: string) => void;
  /** Called with a kill function while the process runs (so the cache can stop it on shutdown). */
  onStart: (kill: () => void) => void;
}

/** How an install ended. */
export type RunOutcome =
  | { ok: true }
  | { ok: false; code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; spawnError?: string };

/**
 * Builds the install's environment from nothing: PATH with the daemon's node first, the variables the
 * installer passes through (registry, proxy), then funcd's own (home and caches). Never the daemon's
 * NODE_OPTIONS, NODE_EXTRA_CA_CERTS or FUNCD_* settings.
 */
export function installEnv(
  installer: Installer,
  own: Record<string, string>,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
    LANG: "C.UTF-8",
  };
  for (const [name, value] of Object.entries(from)) {
    if (value !== undefined && installer.passEnv(name)) env[name] = value;
  }
  return { ...env, ...installer.env, ...own };
}

/** Runs one install: its own process group, killed whole on timeout (SIGKILL: installers hold no state worth a grace). */
export function runInstall(input: RunInput): Promise<RunOutcome> {
  const argv =
    input.uid === undefined || input.setpriv === undefined
      ? input.argv
      : [...dropPrivilegesArgs(input.setpriv, input.uid), ...input.argv];
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: input.cwd,
    env: input.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let timedOut = false;
  const killGroup = () => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // The group is gone already.
    }
  };
  input.onStart(killGroup);
  const drained = Promise.all([
    child.stdout ? readLines(child.stdout, input.onLine) : undefined,
    child.stderr ? readLines(child.stderr, input.onLine) : undefined,
  ]);
  const timer = input.clock.setTimeout(() => {
    timedOut = true;
    killGroup();
  }, input.timeoutMs);
  return new Promise<RunOutcome>((resolve) => {
    child.once("error", (err) => {
      timer.cancel();
      resolve({ ok: false, code: null, signal: null, timedOut: false, spawnError: err.message });
    });
    child.once("exit", (code, signal) => {
      timer.cancel();
      // A package script may have left a background process behind: nothing of an install outlives it.
      killGroup();
      // A leftover grandchild could keep the pipes open; do not wait for it longer than a moment.
      const settle = new Promise((r) => setTimeout(r, 500).unref());
      void Promise.race([drained, settle]).then(() =>
        resolve(code === 0 && !timedOut ? { ok: true } : { ok: false, code, signal, timedOut }),
      );
    });
  });
}
