import path from "node:path";
import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { FuncdError } from "../shared/errors.js";
import { fittingRuntimes, handlerFiles, type TemplateMeta } from "./runtimes.js";

/** One file of uploaded function code, validated and in memory. */
export interface CodeFile {
  path: string;
  data: Buffer;
  mode: number;
}

export interface IntakeLimits {
  /** Total bytes of all files (uncompressed). */
  maxBytes: number;
  maxFiles?: number;
}

/** Normalises a relative path and refuses anything that would leave the function folder. */
export function safeRelativePath(raw: string): string {
  const cleaned = raw.replaceAll("\\", "/").replace(/^\.\/+/, "");
  const normal = path.posix.normalize(cleaned);
  if (
    cleaned === "" ||
    path.posix.isAbsolute(cleaned) ||
    normal === ".." ||
    normal.startsWith("../") ||
    normal.split("/").includes("..") ||
    cleaned.includes("\0")
  ) {
    throw new FuncdError("INVALID_ARCHIVE", `File path "${raw}" leaves the function folder`);
  }
  return normal.replace(/\/$/, "");
}

/** Code sent as a JSON map of path → text or `{ base64 }`. */
export function filesFromMap(
  files: Record<string, string | { base64: string }>,
  limits: IntakeLimits,
): CodeFile[] {
  const out: CodeFile[] = [];
  let total = 0;
  for (const [raw, content] of Object.entries(files)) {
    const data =
      typeof content === "string" ? Buffer.from(content, "utf8") : Buffer.from(content.base64, "base64");
    total += data.length;
    if (total > limits.maxBytes) tooLarge(limits.maxBytes);
    out.push({ path: safeRelativePath(raw), data, mode: 0o644 });
  }
  return checkCount(dedupe(out), limits);
}

/**
 * Highest inflated/compressed ratio accepted once the tar stream passes {@link RATIO_FLOOR} bytes. Real code
 * compresses 3–10×; zeros reach about 1,000×, which is what a gzip bomb is made of.
 */
export const MAX_INFLATE_RATIO = 200;
const RATIO_FLOOR = 8 * 1024 * 1024;

/**
 * Inflates a .tar.gz upload with zlib's asynchronous stream (the work runs on libuv's thread pool, so the
 * event loop keeps serving), handing each inflated chunk to `sink` and aborting as soon as the inflated
 * bytes pass `maxBytes` or the compression ratio turns bomb-like. tar's own Parser would inflate the
 * whole buffer synchronously in one write, which is why the gzip layer is taken off its hands.
 * A plain (uncompressed) tar is passed through as is.
 */
async function inflateBounded(
  archive: Buffer,
  maxBytes: number,
  sink: (chunk: Buffer) => void,
): Promise<void> {
  if (!(archive[0] === 0x1f && archive[1] === 0x8b)) {
    if (archive.length > maxBytes) throw unpacksTooLarge(maxBytes);
    sink(archive);
    return;
  }
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  let inflated = 0;
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: FuncdError) => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      reject(err);
    };
    gunzip.on("data", (chunk: Buffer) => {
      inflated += chunk.length;
      if (inflated > maxBytes) return fail(unpacksTooLarge(maxBytes));
      if (inflated > RATIO_FLOOR && inflated > archive.length * MAX_INFLATE_RATIO) {
        return fail(
          new FuncdError(
            "PAYLOAD_TOO_LARGE",
            `The code unpacks to more than ${MAX_INFLATE_RATIO} times its compressed size (an archive bomb?)`,
          ),
        );
      }
      try {
        sink(chunk);
      } catch (err) {
        fail(err as FuncdError);
      }
    });
    gunzip.on("end", () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    gunzip.on("error", (err: Error) =>
      fail(new FuncdError("INVALID_ARCHIVE", `The code archive is not a valid .tar.gz: ${err.message}`)),
    );
    gunzip.end(archive);
  });
}

function unpacksTooLarge(maxBytes: number): FuncdError {
  return new FuncdError("PAYLOAD_TOO_LARGE", `The code unpacks to more than ${maxBytes} bytes`);
}

/**
 * Code sent as a .tar.gz. Symlinks are kept only when they point inside the
 * tree (stored as a copy of their target); hard links, devices and links that
 * leave the tree are refused, and the uncompressed size is bounded so a small
 * archive cannot expand without limit.
 */
export async function filesFromArchive(archive: Buffer, limits: IntakeLimits): Promise<CodeFile[]> {
  const files = new Map<string, CodeFile>();
  const links: { path: string; target: string }[] = [];
  let total = 0;
  let failure: FuncdError | undefined;

  // The tar stream holds a 512-byte header and up to 511 bytes of padding per entry on top of the files.
  const maxStream = limits.maxBytes + ((limits.maxFiles ?? 10_000) + 2) * 1024;
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onwarn: (_code, message) => {
        failure ??= new FuncdError("INVALID_ARCHIVE", `The code archive is not a valid .tar.gz: ${message}`);
      },
    });
    parser.on("entry", (entry: ReadEntry) => {
      try {
        if (failure) return entry.resume();
        // Strip only a leading "./" (tar's own prefix); "../" must reach the traversal check.
        const rel = entry.path === "." || entry.path === "./" ? "" : entry.path.replace(/^(\.\/)+/, "");
        if (rel === "" || entry.type === "Directory") return entry.resume();
        const safe = safeRelativePath(rel);
        if (entry.type === "SymbolicLink") {
          const target = path.posix.normalize(
            path.posix.join(path.posix.dirname(safe), entry.linkpath ?? ""),
          );
          if (path.posix.isAbsolute(entry.linkpath ?? "") || target.startsWith("../") || target === "..") {
            throw new FuncdError(
              "INVALID_ARCHIVE",
              `Link "${safe}" points outside the function folder (${entry.linkpath})`,
            );
          }
          links.push({ path: safe, target });
          return entry.resume();
        }
        if (entry.type !== "File" && entry.type !== "OldFile" && entry.type !== "ContiguousFile") {
          throw new FuncdError(
            "INVALID_ARCHIVE",
            `Archive entry "${safe}" is a ${entry.type}; only files and folders are accepted`,
          );
        }
        const chunks: Buffer[] = [];
        entry.on("data", (chunk: Buffer) => {
          total += chunk.length;
          if (total > limits.maxBytes) {
            failure ??= unpacksTooLarge(limits.maxBytes);
            return;
          }
          chunks.push(chunk);
        });
        entry.on("end", () => {
          files.set(safe, { path: safe, data: Buffer.concat(chunks), mode: normalMode(entry.mode) });
        });
      } catch (err) {
        failure ??= err as FuncdError;
        entry.resume();
      }
    });
    parser.on("end", resolve);
    parser.on("error", (err: Error) => {
      failure ??= new FuncdError(
        "INVALID_ARCHIVE",
        `The code archive is not a valid .tar.gz: ${err.message}`,
      );
      reject(failure);
    });
    // A refused entry stops the inflate at once rather than after the rest of the archive.
    inflateBounded(archive, maxStream, (chunk) => {
      parser.write(chunk);
      if (failure) throw failure;
    }).then(() => parser.end(), reject);
  });
  if (failure) throw failure;
  for (const link of links) {
    const target = files.get(link.target);
    if (!target)
      throw new FuncdError(
        "INVALID_ARCHIVE",
        `Link "${link.path}" points to "${link.target}", which is not a file in the archive`,
      );
    files.set(link.path, { ...target, path: link.path });
  }
  return checkCount([...files.values()], limits);
}

function dedupe(files: CodeFile[]): CodeFile[] {
  const map = new Map(files.map((f) => [f.path, f]));
  return [...map.values()];
}

function checkCount(files: CodeFile[], limits: IntakeLimits): CodeFile[] {
  const max = limits.maxFiles ?? 10_000;
  if (files.length > max)
    throw new FuncdError(
      "PAYLOAD_TOO_LARGE",
      `The code has ${files.length} files; at most ${max} are accepted`,
    );
  // "lib" and "lib/x.js" cannot both exist on disk: say so here rather than fail later writing the artifact.
  const paths = new Set(files.map((f) => f.path));
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join("/");
      if (paths.has(folder))
        throw new FuncdError(
          "INVALID_ARCHIVE",
          `"${folder}" is both a file and a folder in the code (as "${folder}" and in "${f.path}")`,
        );
    }
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : 1));
}

function tooLarge(max: number): never {
  throw new FuncdError("PAYLOAD_TOO_LARGE", `The code is larger than ${max} bytes`);
}

/**
 * Function files are readable by everyone who may run them (the sandboxed uid is not the daemon's);
 * only the executable bits of the upload are kept.
 */
function normalMode(mode: number | undefined): number {
  return 0o644 | ((mode ?? 0) & 0o111);
}

/** Code as a deploy or a build takes it: a files map, a base64 .tar.gz, or both. */
export interface CodeUpload {
  files?: Record<string, string | { base64: string }> | undefined;
  archive?: string | undefined;
}

/**
 * The upload as files: the archive's, the map's, or both — the map's files win over the archive's. With
 * neither, no files (the caller says whether that is an error).
 */
export async function readCode(upload: CodeUpload, limits: IntakeLimits): Promise<CodeFile[]> {
  if (upload.archive === undefined) return filesFromMap(upload.files ?? {}, limits);
  const bytes = Buffer.from(upload.archive, "base64");
  if (bytes.length > limits.maxBytes) {
    throw new FuncdError(
      "PAYLOAD_TOO_LARGE",
      `The code archive is ${bytes.length} bytes; the limit is ${limits.maxBytes}`,
    );
  }
  const fromArchive = await filesFromArchive(bytes, limits);
  if (upload.files === undefined) return fromArchive;
  const merged = new Map(fromArchive.map((f) => [f.path, f]));
  for (const f of filesFromMap(upload.files, limits)) merged.set(f.path, f);
  return [...merged.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

/**
 * Fails early, with the file list, when the handler's file (`handler.main` → `handler` plus one of the
 * runtime's `extensions`) is not among `paths`; when the files fit another of `templates`, says which
 * runtime and how to ask for it.
 */
export function checkHandlerFile(
  handler: string,
  paths: readonly string[],
  template: TemplateMeta,
  templates: readonly TemplateMeta[] = [],
): void {
  const candidates = handlerFiles(handler, template.extensions);
  if (candidates.some((c) => paths.includes(c))) return;
  const shown = paths.slice(0, 20).join(", ") + (paths.length > 20 ? ", …" : "");
  const others = templates.filter((t) => t.runtime !== template.runtime);
  const fit = fittingRuntimes(others, (file) => paths.includes(file), handler)[0];
  const hint = fit
    ? `; ${fit.file} is a ${fit.template.runtime} function's: deploy it with --runtime ${fit.template.runtime}` +
      ` ("runtime": "${fit.template.runtime}" in the spec)`
    : "";
  throw new FuncdError(
    "HANDLER_LOAD_FAILED",
    `Handler "${handler}" needs the file ${candidates.join(" or ")}, which is not in the code ` +
      `(files: ${shown || "none"})${hint}`,
  );
}
