import { readFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type Document, isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { FUNCTION_NAME } from "../deploy/spec.js";
import { usageError } from "./errors.js";

/**
 * Stack files (`funcd.yaml`): a `functions:` map of name → spec, the same fields
 * the API takes, plus `path:` (the function's folder, relative to the stack
 * file, default `./<name>`). The CLI checks the shape and leaves the fields to
 * the daemon, which owns the schema.
 */
export type SpecFields = Record<string, unknown>;

export interface StackFunction {
  name: string;
  /** Absolute path of the function's folder. */
  dir: string;
  /** Spec fields to send, without `name` and `path`. */
  spec: SpecFields;
}

export interface Stack {
  file: string;
  functions: StackFunction[];
}

interface ParsedYaml {
  doc: Document;
  value: unknown;
  /** `file:line:col` of the node at `path`, or the file name when it has no position. */
  where(path: Array<string | number>): string;
}

/** Parses YAML and reports the first syntax error as `file:line:col: message`. */
export function parseYaml(text: string, file: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const error = doc.errors[0];
  if (error) {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    throw usageError(`Invalid YAML in ${file}:${line}:${col}: ${error.message}`);
  }
  const where = (path: Array<string | number>) => {
    const offset = rangeStart(doc, path);
    if (offset === undefined) return file;
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  return { doc, value: doc.toJS(), where };
}

/** Where the entry at `path` starts: its key inside a map (where users look), else the node itself. */
function rangeStart(doc: Document, path: Array<string | number>): number | undefined {
  const last = path.at(-1);
  const parent = path.length === 0 ? undefined : doc.getIn(path.slice(0, -1), true);
  if (last !== undefined && isMap(parent)) {
    const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === last);
    if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
  }
  const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
  return (node as { range?: [number, number, number] } | null | undefined)?.range?.[0];
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The functions of a parsed stack document; `file` is used for messages and to resolve paths. */
export function parseStack(text: string, file: string): Stack {
  const parsed = parseYaml(text, file);
  const { value, where } = parsed;
  if (!isRecord(value) || !("functions" in value)) {
    throw usageError(`${where([])}: a stack file needs a "functions:" map of name → spec`);
  }
  const { functions } = value;
  if (!isRecord(functions) || !isMap(parsed.doc.getIn(["functions"], true))) {
    throw usageError(
      `${where(["functions"])}: "functions" must be a map of name → spec, e.g.\n  functions:\n    sum:\n      runtime: nodejs20`,
    );
  }
  const base = dirname(resolve(file));
  const out: StackFunction[] = [];
  for (const [name, raw] of Object.entries(functions)) {
    const at = where(["functions", name]);
    if (!FUNCTION_NAME.test(name)) {
      throw usageError(
        `${at}: "${name}" is not a function name (lower-case letters, digits and '-', starting with a letter)`,
      );
    }
    if (raw !== null && raw !== undefined && !isRecord(raw)) {
      throw usageError(`${at}: the spec of "${name}" must be a map of fields (runtime, handler, routes, …)`);
    }
    const { path, name: _ignored, ...spec } = raw ?? {};
    if (path !== undefined && (typeof path !== "string" || path === "")) {
      throw usageError(`${where(["functions", name, "path"])}: "path" of "${name}" must be a folder path`);
    }
    out.push({ name, dir: resolve(base, typeof path === "string" ? path : `./${name}`), spec });
  }
  if (out.length === 0) throw usageError(`${where(["functions"])}: "functions" lists no function`);
  return { file, functions: out };
}

export async function readStack(file: string): Promise<Stack> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw usageError(
        `Stack file ${file} does not exist`,
        "Pass one with -f, or write a funcd.yaml with a functions: map.",
      );
    }
    throw usageError(`Cannot read ${file}: ${(err as Error).message}`);
  }
  return parseStack(text, file);
}

/** Spec files `funcd deploy <dir>` reads its defaults from, first found wins. */
export const FOLDER_SPEC_FILES = ["funcd.yaml", "funcd.yml", "function.yaml", "function.yml"];

export interface FolderDefaults {
  file: string;
  /** The name the file gives the function, if it does. */
  name?: string;
  spec: SpecFields;
}

/**
 * The spec defaults in a function folder: a file holding one spec (flat fields,
 * or a stack with one function — or the one called `name`).
 */
export async function readFolderDefaults(dir: string, name?: string): Promise<FolderDefaults | undefined> {
  for (const candidate of FOLDER_SPEC_FILES) {
    const file = join(dir, candidate);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    const { value, where } = parseYaml(text, file);
    if (value === null || value === undefined) return undefined;
    if (!isRecord(value)) throw usageError(`${where([])}: expected a map of spec fields`);
    if ("functions" in value) {
      const stack = parseStack(text, file);
      const chosen =
        stack.functions.length === 1 ? stack.functions[0] : stack.functions.find((f) => f.name === name);
      if (!chosen) {
        const names = stack.functions.map((f) => f.name).join(", ");
        throw usageError(
          `${file} defines ${stack.functions.length} functions (${names}); pass --name to pick one`,
          `To deploy them all: funcd up -f ${file}`,
        );
      }
      return { file, name: chosen.name, spec: chosen.spec };
    }
    const { name: fileName, path: _path, ...spec } = value;
    return typeof fileName === "string" ? { file, name: fileName, spec } : { file, spec };
  }
  return undefined;
}

/** The default function name for a folder: its base name. */
export const folderName = (dir: string) => basename(resolve(dir));
