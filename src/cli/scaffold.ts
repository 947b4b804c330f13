import { isUtf8 } from "node:buffer";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { RuntimeRegistry } from "../builder/runtimes.js";
import { FUNCTION_NAME } from "../deploy/spec.js";
import { usageError } from "./errors.js";

/**
 * The package root: the nearest folder above this module with funcd's
 * package.json. Walking up (rather than a fixed `../..`) works from src/cli/,
 * dist/cli/ and any folder nested below them.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "funcd") return dir;
      } catch {
        // Not ours (or broken): keep looking further up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return resolve(dirname(from), "..", "..");
    dir = parent;
  }
}

export function packageVersion(root: string = packageRoot()): string {
  try {
    return (
      (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version?: string }).version ??
      "0.0.0"
    );
  } catch {
    return "0.0.0";
  }
}

export const defaultTemplatesDir = () => join(packageRoot(), "templates");

/** Runtimes `funcd new` can scaffold: folders of the templates dir that hold a `scaffold/`. */
export async function scaffoldRuntimes(templatesDir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(templatesDir);
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const entry of entries.sort()) {
    if (await isDir(join(templatesDir, entry, "scaffold"))) found.push(entry);
  }
  return found;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

export interface NewFunctionOptions {
  name: string;
  runtime: string;
  /** The folder the function folder is created in. */
  dir: string;
  templatesDir: string;
}

export interface NewFunctionResult {
  /** Absolute path of the created folder. */
  path: string;
  /** Files written, relative to it. */
  files: string[];
  /** The runtime's own name (an alias given resolved). */
  runtime: string;
}

/**
 * Copies `templates/<runtime>/scaffold/` to `<dir>/<name>/`, replacing `{{name}}`
 * in text files. Never overwrites: an existing target is refused. The copy is
 * made in a temporary sibling and renamed into place, so a failure leaves nothing half-written.
 */
export async function newFunction(options: NewFunctionOptions): Promise<NewFunctionResult> {
  const { name, runtime, templatesDir } = options;
  if (!FUNCTION_NAME.test(name)) {
    throw usageError(
      `"${name}" is not a function name: use lower-case letters, digits and '-', starting with a letter`,
    );
  }
  // An alias (`node`, `python`) names its runtime's template.
  const template = new RuntimeRegistry(templatesDir).find(runtime);
  const source = join(template?.dir ?? join(templatesDir, runtime), "scaffold");
  if (!(await isDir(source))) {
    const known = await scaffoldRuntimes(templatesDir);
    throw usageError(
      `Unknown runtime "${runtime}" for funcd new`,
      known.length > 0
        ? `Available runtimes: ${known.join(", ")}`
        : `No runtime templates found in ${templatesDir}`,
    );
  }
  const target = resolve(options.dir, name);
  if (existsSync(target)) {
    throw usageError(`${target} already exists; funcd new does not overwrite`, "Pick another name or --dir.");
  }
  await mkdir(dirname(target), { recursive: true });
  const staging = `${target}.funcd-new-${process.pid}`;
  const files: string[] = [];
  try {
    await copyTree(source, staging, "", name, files);
    await rename(staging, target);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return { path: target, files: files.sort(), runtime: template?.runtime ?? runtime };
}

async function copyTree(from: string, to: string, rel: string, name: string, files: string[]): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const dest = join(to, entry.name.replaceAll("{{name}}", name));
    const relPath = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      await copyTree(src, dest, relPath, name, files);
    } else if (entry.isFile()) {
      const content = await readFile(src);
      const mode = (await stat(src)).mode;
      // Only text is templated; a binary file (an icon, a wasm) is copied byte for byte.
      const out = isUtf8(content)
        ? Buffer.from(content.toString("utf8").replaceAll("{{name}}", name))
        : content;
      await writeFile(dest, out, { mode });
      files.push(relPath.replaceAll("{{name}}", name));
    }
  }
}
