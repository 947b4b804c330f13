/**
 * funcd's own descriptions, for `funcd apply`: a stack (`functions:` map, as funcd.yaml) or a
 * `funcd.dev/v1` `Function` (`metadata.name` + `spec`, the form `funcd get -o yaml` prints). Fields are
 * passed to the daemon's schema as they are; a key the schema does not have is reported, not dropped.
 */
import { FUNCTION_NAME, FunctionSpecFields } from "../deploy/spec.js";
import type { CodeSource, ConvertedFunction } from "./types.js";
import { child, Findings, isRecord, type Json } from "./walk.js";

export const FUNCD_API_VERSION = "funcd.dev/v1";

const SPEC_KEYS = new Set(Object.keys(FunctionSpecFields.shape));

export function readFuncdFunction(doc: Json, index: number): { fn?: ConvertedFunction; findings: Findings } {
  const base = `documents[${index}]`;
  const f = new Findings();
  f.rest(doc, base, ["apiVersion", "kind", "metadata", "spec"]);
  const metadata = f.record(doc, "metadata", base) ?? {};
  const metaPath = child(base, "metadata");
  f.rest(metadata, metaPath, ["name", "labels", "annotations"]);
  const name = f.string(metadata, "name", metaPath);
  const spec = f.record(doc, "spec", base) ?? {};
  const fields: Json = { ...spec };
  const labels = f.stringMap(metadata, "labels", metaPath);
  const annotations = f.stringMap(metadata, "annotations", metaPath);
  if (labels) fields.labels = { ...labels, ...(isRecord(spec.labels) ? spec.labels : {}) };
  if (annotations)
    fields.annotations = { ...annotations, ...(isRecord(spec.annotations) ? spec.annotations : {}) };
  const fn = readSpec(name, fields, child(base, "spec"), f, index, `Function/${name ?? "?"}`, false);
  return fn ? { fn, findings: f } : { findings: f };
}

/** A funcd stack document: one function per entry of `functions:`. */
export function readFuncdStack(doc: Json, index: number): { fns: ConvertedFunction[]; findings: Findings[] } {
  const base = `documents[${index}]`;
  const top = new Findings();
  top.rest(doc, base, ["functions"]);
  const fns: ConvertedFunction[] = [];
  const findings = [top];
  const functions = top.record(doc, "functions", base) ?? {};
  for (const [name, raw] of Object.entries(functions)) {
    const f = new Findings();
    findings.push(f);
    const path = child(child(base, "functions"), name);
    if (raw !== null && raw !== undefined && !isRecord(raw)) {
      f.problem(path, "must be a map of spec fields");
      continue;
    }
    const fn = readSpec(name, { ...(raw ?? {}) }, path, f, index, `functions.${name}`, true);
    if (fn) fns.push(fn);
  }
  return { fns, findings };
}

function readSpec(
  name: string | undefined,
  fields: Json,
  path: string,
  f: Findings,
  index: number,
  label: string,
  stack: boolean,
): ConvertedFunction | undefined {
  if (name === undefined) {
    f.problem(stack ? path : "metadata.name", "is required");
    return undefined;
  }
  if (!FUNCTION_NAME.test(name)) {
    f.problem(
      path,
      `"${name}" is not a function name (lower-case letters, digits and '-', starting with a letter)`,
    );
    return undefined;
  }
  const { path: folder, source, name: _name, ...spec } = fields;
  let code: CodeSource = stack ? { kind: "folder", path: `./${name}` } : { kind: "current" };
  if (typeof folder === "string") code = { kind: "folder", path: folder };
  else if (folder !== undefined) f.problem(child(path, "path"), "must be a folder path");
  if (source !== undefined) {
    const sourcePath = child(path, "source");
    if (!isRecord(source)) f.problem(sourcePath, "must be a map (inline or git)");
    else {
      f.rest(source, sourcePath, ["inline", "git"]);
      const inline = f.record(source, "inline", sourcePath);
      const git = f.record(source, "git", sourcePath);
      if (inline) {
        const files = f.stringMap(inline, "files", child(sourcePath, "inline"));
        if (!files) f.problem(child(child(sourcePath, "inline"), "files"), "is required: path → content");
        else code = { kind: "inline", files };
      } else if (git) {
        const gitPath = child(sourcePath, "git");
        f.rest(git, gitPath, ["url", "ref", "dir", "secret"]);
        const url = f.string(git, "url", gitPath);
        if (url === undefined) f.problem(child(gitPath, "url"), "is required");
        else {
          const ref = f.string(git, "ref", gitPath);
          const dir = f.string(git, "dir", gitPath);
          const secret = f.string(git, "secret", gitPath);
          code = {
            kind: "git",
            git: { url, ...(ref ? { ref } : {}), ...(dir ? { dir } : {}), ...(secret ? { secret } : {}) },
          };
        }
      }
    }
  }
  const kept: Json = {};
  for (const [key, value] of Object.entries(spec)) {
    if (SPEC_KEYS.has(key)) kept[key] = value;
    else f.ignore(child(path, key), "not a funcd spec field");
  }
  f.honour(Object.keys(kept).length);
  if (f.problems.length > 0) return undefined;
  return {
    index,
    format: "funcd",
    label,
    name,
    spec: kept,
    code,
    ignored: f.ignored,
    notes: f.notes,
    honoured: f.honoured,
  };
}
