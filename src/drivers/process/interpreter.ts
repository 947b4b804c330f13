/**
 * Finding the programs the process driver runs: interpreters named by templates (`node`, `python3`)
 * and helpers (`bwrap`, `setpriv`). Each is resolved once to a real binary, because a version-manager
 * shim (pyenv, asdf, nvm's wrappers) is a shell script that reads the daemon's environment and home
 * directory — neither of which exists inside the sandbox — and costs a process spawn on every start.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, open, realpath } from "node:fs/promises";
import { basename, delimiter, dirname, join } from "node:path";
import { FuncdError, messageOf } from "../../shared/errors.js";

/** A resolved interpreter. */
export interface Interpreter {
  /** The name the template used, e.g. `node`. */
  name: string;
  /** Absolute path of the real binary. */
  path: string;
  /**
   * The install prefix (`<prefix>/bin/<binary>`) when it lies outside /usr, which the sandbox mounts
   * anyway: it must be made visible (read-only) for the interpreter's libraries to load.
   */
  prefix?: string;
}

/** Every executable called `name` on `PATH`, in PATH order. */
export async function whichAll(
  name: string,
  path = process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
): Promise<string[]> {
  const found: string[] = [];
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    const ok = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (ok) found.push(candidate);
  }
  return found;
}

/** The first executable called `name` on `PATH`, undefined when there is none. */
export async function which(name: string, path?: string): Promise<string | undefined> {
  return (await whichAll(name, path))[0];
}

/**
 * How to ask an interpreter family for its real executable when PATH leads to a script (a shim).
 * Keyed by the name without version digits (`python3.11` → `python`).
 */
const SELF_LOCATORS: Record<string, string[]> = {
  python: ["-c", "import sys; print(sys.executable)"],
};

async function isScript(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer.toString("latin1") === "#!";
  } finally {
    await handle.close();
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

/** Only shims on PATH: ask the interpreter behind the first one where its real executable is. */
async function askShim(name: string, shim: string): Promise<string> {
  const locator = SELF_LOCATORS[name.replace(/[\d.]+$/, "")];
  if (locator === undefined) return realpath(shim);
  const reported = await run(shim, locator).then(
    (out) => out.trim(),
    (err: unknown) => {
      throw new FuncdError(
        "UNKNOWN_RUNTIME",
        `Interpreter "${name}" (${shim}) cannot be run: ${messageOf(err)}`,
      );
    },
  );
  if (reported === "") {
    throw new FuncdError("UNKNOWN_RUNTIME", `Interpreter "${name}" (${shim}) did not report its executable`);
  }
  return realpath(reported);
}

async function locate(name: string): Promise<Interpreter> {
  let path: string;
  if (name === "node" || name === "nodejs") {
    // The daemon's own Node: known to work, and no PATH lookup can pick a different version by surprise.
    path = await realpath(process.execPath);
  } else {
    const found = await whichAll(name);
    if (found.length === 0) {
      throw new FuncdError(
        "UNKNOWN_RUNTIME",
        `Interpreter "${name}" is not installed: it is not on the daemon's PATH`,
      );
    }
    // The first real binary on PATH, skipping version-manager shims (scripts) ahead of it.
    let binary: string | undefined;
    for (const candidate of found) {
      const real = await realpath(candidate);
      if (!(await isScript(real))) {
        binary = real;
        break;
      }
    }
    if (binary === undefined) binary = await askShim(name, found[0] as string);
    path = binary;
  }
  const binDir = dirname(path);
  const prefix = basename(binDir) === "bin" ? dirname(binDir) : binDir;
  const underUsr = prefix === "/usr" || prefix.startsWith("/usr/");
  return underUsr ? { name, path } : { name, path, prefix };
}

const cache = new Map<string, Promise<Interpreter>>();

/** Resolves an interpreter name once per daemon; later calls share the first answer. */
export function resolveInterpreter(name: string): Promise<Interpreter> {
  let pending = cache.get(name);
  if (pending === undefined) {
    pending = locate(name);
    // A failure is not cached: the operator may install the interpreter and retry.
    pending.catch(() => cache.delete(name));
    cache.set(name, pending);
  }
  return pending;
}
