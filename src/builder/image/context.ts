/**
 * The build context of an image and the content hash that names it.
 *
 * A context is a temp folder the engine receives as a tar stream:
 *   Dockerfile   the template's
 *   runtime/     the files the template's `image.copy` lists (the runtime server), as in the template
 *   deps/        the contents of the function's dependency-cache entry (`node_modules/`, `.python_packages/`)
 *   function/    the function's files
 * Only what the Dockerfile uses goes in (not the template's scaffold, README or bytecode caches), so the
 * hash covers exactly what can change an image, and editing a README rebuilds nothing.
 *
 * The hash is a sha256 of: the target stage, every context file (path, executable bit, content), the
 * dependency key (not the installed tree: the key names it, and hashing node_modules would cost more
 * than the build), the base image's id, and the build arguments and labels.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { create as createTar } from "tar";
import { FuncdError } from "../../shared/errors.js";
import { linkTree } from "../artifacts.js";
import type { TemplateMeta } from "../runtimes.js";

/** Bump when the recipe of the hash or the context layout changes, so old tags are not reused. */
const HASH_VERSION = 1;
/** Hex digits of the hash in a tag (80 bits: no collision among any number of images one host holds). */
export const HASH_LENGTH = 20;
/** Names of context folders (see removeStaleContexts). */
const CONTEXT_PREFIX = "funcd-build-";
/** Never copied from a template: caches and metadata an image does not need. */
const SKIPPED = new Set(["__pycache__", "node_modules", ".git", ".DS_Store"]);

/** One file of a build context, in memory (template and function files are small). */
export interface ContextFile {
  /** Relative to the context root for template files, to the function folder for function files. */
  path: string;
  data: Buffer;
  mode: number;
}

/** The stage of the template's Dockerfile an image is built to. */
export type BuildTarget = "runtime" | "function";

/** Everything that decides what an image holds. */
export interface HashInputs {
  target: BuildTarget;
  templateFiles: readonly ContextFile[];
  functionFiles: readonly ContextFile[];
  depsKey: string | null;
  /** The base image's id (`sha256:…`), so a re-seeded or pulled base makes new tags. */
  baseImageId: string;
  buildArgs: Readonly<Record<string, string>>;
  labels: Readonly<Record<string, string>>;
}

/** The content hash naming an image: see the module comment. */
export function contentHash(inputs: HashInputs): string {
  const hash = createHash("sha256");
  const sorted = (record: Readonly<Record<string, string>>) =>
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  hash.update(
    JSON.stringify([
      HASH_VERSION,
      inputs.target,
      inputs.depsKey,
      inputs.baseImageId,
      sorted(inputs.buildArgs),
      sorted(inputs.labels),
    ]),
  );
  const group = (name: string, files: readonly ContextFile[]) => {
    for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
      const digest = createHash("sha256").update(f.data).digest("hex");
      hash.update(`\n${name}\0${f.path}\0${f.mode & 0o111 ? "x" : "-"}\0${digest}`);
    }
  };
  group("template", inputs.templateFiles);
  group("function", inputs.functionFiles);
  return hash.digest("hex").slice(0, HASH_LENGTH);
}

/**
 * The template's part of a context: its `Dockerfile` and, under `runtime/`, what `image.copy` lists
 * (folders recursively, without bytecode caches). Fails with IMAGE_BUILD_FAILED when the template cannot
 * be built into an image (no `image:` section, no Dockerfile, a listed file missing).
 */
export async function readTemplateFiles(template: TemplateMeta): Promise<ContextFile[]> {
  const image = requireImage(template);
  const files: ContextFile[] = [];
  const dockerfile = path.join(template.dir, "Dockerfile");
  if (!existsSync(dockerfile)) {
    throw new FuncdError(
      "IMAGE_BUILD_FAILED",
      `Runtime "${template.runtime}" cannot be built into an image: ${dockerfile} is missing`,
    );
  }
  files.push(await readContextFile(dockerfile, "Dockerfile"));
  for (const entry of image.copy) {
    const source = path.join(template.dir, entry);
    const info = await stat(source).catch(() => undefined);
    if (!info) {
      throw new FuncdError(
        "IMAGE_BUILD_FAILED",
        `Runtime "${template.runtime}" cannot be built into an image: "${entry}" (listed in image.copy of its template.yaml) is not in ${template.dir}`,
      );
    }
    const target = path.posix.join("runtime", entry);
    if (info.isDirectory()) files.push(...(await readFolder(source, target)));
    else files.push(await readContextFile(source, target));
  }
  return files;
}

/** The template's `image:` section, or IMAGE_BUILD_FAILED saying it has none. */
export function requireImage(template: TemplateMeta): NonNullable<TemplateMeta["image"]> {
  if (!template.image) {
    throw new FuncdError(
      "IMAGE_BUILD_FAILED",
      `Runtime "${template.runtime}" cannot be built into an image: its template.yaml has no "image:" section`,
    );
  }
  return template.image;
}

async function readContextFile(source: string, target: string): Promise<ContextFile> {
  const [data, info] = await Promise.all([readFile(source), stat(source)]);
  return { path: target, data, mode: info.mode & 0o111 ? 0o755 : 0o644 };
}

async function readFolder(dir: string, target: string): Promise<ContextFile[]> {
  const out: ContextFile[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (SKIPPED.has(entry.name) || entry.name.endsWith(".pyc")) continue;
    const source = path.join(dir, entry.name);
    const dest = path.posix.join(target, entry.name);
    const info = await stat(source).catch(() => undefined);
    if (info?.isDirectory()) out.push(...(await readFolder(source, dest)));
    else if (info?.isFile()) out.push(await readContextFile(source, dest));
  }
  return out;
}

/** An assembled context folder; dispose it when the build is over. */
export interface BuildContext extends AsyncDisposable {
  readonly dir: string;
  /** The context as an (uncompressed) tar stream, what the Engine API's /build takes. */
  tar(): Readable;
  dispose(): Promise<void>;
}

export interface AssembleOptions {
  templateFiles: readonly ContextFile[];
  functionFiles?: readonly ContextFile[];
  /** A dependency-cache entry: its contents go under deps/. */
  depsDir?: string | undefined;
  /** Where the temp folder goes (default the OS temp dir); on the cache's file system, deps are hard links. */
  workDir?: string | undefined;
}

/** Writes a context folder: see the module comment for its layout. */
export async function assembleContext(options: AssembleOptions): Promise<BuildContext> {
  const parent = options.workDir ?? tmpdir();
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, CONTEXT_PREFIX));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    for (const file of options.templateFiles) await writeContextFile(dir, file.path, file);
    await mkdir(path.join(dir, "function"), { mode: 0o755 });
    for (const file of options.functionFiles ?? []) {
      await writeContextFile(dir, path.posix.join("function", safePath(file.path)), file);
    }
    await mkdir(path.join(dir, "deps"), { mode: 0o755 });
    // Hard links where the file system allows (the cache entry never changes and tar only reads it).
    if (options.depsDir) await linkTree(options.depsDir, path.join(dir, "deps"));
  } catch (err) {
    await dispose();
    throw err;
  }
  const entries = (await readdir(dir)).sort();
  return {
    dir,
    tar: () => createTar({ cwd: dir, portable: true }, entries) as unknown as Readable,
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}

/** Removes the `funcd-build-*` folders in `workDir`: contexts of builds a crash interrupted. */
export async function removeStaleContexts(workDir: string): Promise<void> {
  const names = await readdir(workDir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => name.startsWith(CONTEXT_PREFIX))
      .map((name) => rm(path.join(workDir, name), { recursive: true, force: true })),
  );
}

/** Function paths come validated from code intake; refuse anything that would leave function/ anyway. */
function safePath(p: string): string {
  const normal = path.posix.normalize(p);
  if (normal.startsWith("../") || normal === ".." || path.posix.isAbsolute(normal)) {
    throw new FuncdError("INVALID_ARCHIVE", `File path "${p}" leaves the function folder`);
  }
  return normal;
}

async function writeContextFile(root: string, rel: string, file: ContextFile): Promise<void> {
  const target = path.join(root, rel);
  await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
  // Readable by everyone: the image runs as an unprivileged user and the files stay root's.
  await writeFile(target, file.data, { mode: file.mode & 0o111 ? 0o755 : 0o644 });
}
