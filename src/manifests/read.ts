/**
 * Reads a (multi-document) YAML file of function descriptions in any mix of formats: each document is
 * recognised by its apiVersion/kind (or, for stacks, its shape) and handed to its reader. The result
 * holds every function that could be read and every problem, each with its `documents[i].…` path.
 */
import { LineCounter, parseAllDocuments } from "yaml";
import { FUNCD_API_VERSION, readFuncdFunction, readFuncdStack } from "./funcd.js";
import { KUBELESS_API_VERSION, readKubeless } from "./kubeless.js";
import { KYMA_API_VERSION, readKyma } from "./kyma.js";
import { type Includes, isOpenfaasStack, readOpenfaas } from "./openfaas.js";
import type { ConvertedFunction, ManifestProblem, ReadResult, RuntimeLookup } from "./types.js";
import { type Findings, isRecord } from "./walk.js";

/** apiVersion/kind pairs funcd reads, for messages. */
export const KNOWN_KINDS = [
  `${KYMA_API_VERSION} Function`,
  `${KUBELESS_API_VERSION} Function`,
  `${FUNCD_API_VERSION} Function`,
  "an OpenFaaS stack (provider + functions)",
  "a funcd stack (functions)",
];

export interface ReadOptions {
  runtimes: RuntimeLookup;
  /** Files the documents refer to (OpenFaaS `environment_file`), by the path written in them. */
  includes?: Includes;
}

export function readManifests(text: string, options: ReadOptions): ReadResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  const functions: ConvertedFunction[] = [];
  const problems: ManifestProblem[] = [];
  const take = (found: { fn?: ConvertedFunction; findings: Findings }) => {
    problems.push(...found.findings.problems);
    if (found.fn) functions.push(found.fn);
  };
  const takeMany = (found: { fns: ConvertedFunction[]; findings: Findings[] }) => {
    for (const f of found.findings) problems.push(...f.problems);
    functions.push(...found.fns);
  };
  list.forEach((doc, index) => {
    const base = `documents[${index}]`;
    const error = doc.errors[0];
    if (error) {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      problems.push({ path: base, message: `invalid YAML at line ${line}, column ${col}: ${error.message}` });
      return;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (!isRecord(value)) {
      problems.push({ path: base, message: "must be a map (a Function resource or a stack)" });
      return;
    }
    const { apiVersion, kind } = value;
    if (apiVersion !== undefined || kind !== undefined) {
      const id = `${String(apiVersion ?? "(no apiVersion)")} ${String(kind ?? "(no kind)")}`;
      if (kind === "Function" && apiVersion === KYMA_API_VERSION)
        take(readKyma(value, index, options.runtimes));
      else if (kind === "Function" && apiVersion === KUBELESS_API_VERSION)
        take(readKubeless(value, index, options.runtimes));
      else if (kind === "Function" && apiVersion === FUNCD_API_VERSION) take(readFuncdFunction(value, index));
      else if (kind === "Function" && String(apiVersion).startsWith("serverless.kyma-project.io/"))
        problems.push({
          path: `${base}.apiVersion`,
          message: `${String(apiVersion)} is not supported: funcd reads Kyma's ${KYMA_API_VERSION} (the buildless Function)`,
        });
      else
        problems.push({
          path: `${base}.${kind === undefined ? "kind" : "apiVersion"}`,
          message: `unknown kind "${id}"; funcd reads ${KNOWN_KINDS.join(", ")}`,
        });
      return;
    }
    if ("functions" in value) {
      if (isOpenfaasStack(value))
        takeMany(readOpenfaas(value, index, options.runtimes, options.includes ?? {}));
      else takeMany(readFuncdStack(value, index));
      return;
    }
    problems.push({
      path: base,
      message: `has no apiVersion/kind and no functions: map; funcd reads ${KNOWN_KINDS.join(", ")}`,
    });
  });
  const seen = new Map<string, ConvertedFunction>();
  for (const fn of functions) {
    const other = seen.get(fn.name);
    if (other)
      problems.push({
        path: `documents[${fn.index}]`,
        message: `function "${fn.name}" is also described by documents[${other.index}] (${other.label})`,
      });
    seen.set(fn.name, fn);
  }
  return { functions, problems, documents: list.length };
}

/** The paths a document set needs read from disk besides code folders (OpenFaaS environment_file). */
export function includePaths(text: string): string[] {
  const out = new Set<string>();
  for (const doc of parseAllDocuments(text)) {
    if (!("toJS" in doc)) continue;
    const value: unknown = doc.errors.length > 0 ? undefined : doc.toJS();
    if (!isRecord(value) || !isRecord(value.functions)) continue;
    for (const fn of Object.values(value.functions)) {
      if (!isRecord(fn) || !Array.isArray(fn.environment_file)) continue;
      for (const file of fn.environment_file) if (typeof file === "string") out.add(file);
    }
  }
  return [...out];
}
