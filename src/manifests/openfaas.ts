/**
 * OpenFaaS `stack.yml` (`functions.<name>`) → funcd specs. Each function's `handler` folder (relative to
 * the stack file) is its code, deployed unchanged with a small adapter file beside it (openfaas-shims.ts).
 */

import { parse as parseYaml } from "yaml";
import { FUNCTION_NAME } from "../deploy/spec.js";
import { parseDuration } from "../shared/duration.js";
import { openfaasShim } from "./openfaas-shims.js";
import { mapRuntime, OPENFAAS_LANGS } from "./runtimes.js";
import type { ConvertedFunction, RuntimeLookup } from "./types.js";
import { child, cpuValue, Findings, isRecord, type Json, memoryMiB } from "./walk.js";

/** Files a stack file refers to besides code folders (`environment_file`), by the path written in it. */
export type Includes = Readonly<Record<string, string>>;

/** True for a document that looks like an OpenFaaS stack (`provider:` or a function with `lang:`). */
export function isOpenfaasStack(doc: Json): boolean {
  if (isRecord(doc.provider)) return true;
  if (!isRecord(doc.functions)) return false;
  return Object.values(doc.functions).some(
    (fn) => isRecord(fn) && (fn.lang !== undefined || fn.image !== undefined),
  );
}

/** Labels OpenFaaS reads for scaling; the rest are passed through as funcd labels. */
const SCALE_LABELS = {
  min: "com.openfaas.scale.min",
  max: "com.openfaas.scale.max",
  zero: "com.openfaas.scale.zero",
} as const;

export function readOpenfaas(
  doc: Json,
  index: number,
  runtimes: RuntimeLookup,
  includes: Includes,
): { fns: ConvertedFunction[]; findings: Findings[] } {
  const base = `documents[${index}]`;
  const top = new Findings();
  top.rest(doc, base, ["version", "provider", "functions"], {
    configuration: "template sources and copies are for faas-cli builds; funcd builds from its own templates",
  });
  if (doc.version !== undefined)
    top.ignore(child(base, "version"), "the stack format's version; nothing to apply");
  if (doc.provider !== undefined)
    top.ignore(
      child(base, "provider"),
      "funcd is the provider: the daemon is --url / FUNCD_URL, not provider.gateway",
    );
  const functions = top.record(doc, "functions", base);
  const fns: ConvertedFunction[] = [];
  const findings: Findings[] = [top];
  if (!functions) {
    top.problem(child(base, "functions"), "is required: a map of name → function");
    return { fns, findings };
  }
  for (const [name, raw] of Object.entries(functions)) {
    const f = new Findings();
    findings.push(f);
    const path = child(child(base, "functions"), name);
    if (!FUNCTION_NAME.test(name)) {
      f.problem(path, `"${name}" is not a funcd function name (lower-case letters, digits and '-')`);
      continue;
    }
    if (!isRecord(raw)) {
      f.problem(path, "must be a map (lang, handler, …)");
      continue;
    }
    const fn = readFunction(name, raw, path, f, runtimes, includes);
    if (fn && f.problems.length === 0) fns.push({ ...fn, index });
  }
  return { fns, findings };
}

function readFunction(
  name: string,
  fn: Json,
  path: string,
  f: Findings,
  runtimes: RuntimeLookup,
  includes: Includes,
): ConvertedFunction | undefined {
  f.rest(
    fn,
    path,
    [
      "lang",
      "handler",
      "image",
      "environment",
      "environment_file",
      "secrets",
      "labels",
      "annotations",
      "limits",
      "requests",
      "readonly_root_filesystem",
    ],
    {
      namespace: "funcd has one namespace: function names are unique per daemon",
      build_args: "funcd builds from its own templates; build arguments have nothing to apply to",
      build_options:
        "funcd builds from its own templates; dependencies come from package.json / requirements.txt",
      skip_build: "funcd always builds (or runs the code buildless)",
      constraints: "placement constraints are Swarm/Kubernetes scheduling; funcd places instances itself",
      fprocess: "funcd's runtime server runs the handler; there is no watchdog process to configure",
    },
  );
  const out: Json = {};
  const lang = f.string(fn, "lang", path);
  const style = lang === undefined ? undefined : OPENFAAS_LANGS[lang]?.style;
  if (lang === undefined) {
    f.problem(child(path, "lang"), "is required (funcd runs node20, python3-http, …)");
    return undefined;
  }
  const runtime = mapRuntime("openfaas", lang, child(path, "lang"), f, runtimes);
  if (runtime === undefined || style === undefined) {
    if (runtime !== undefined)
      f.problem(child(path, "lang"), `"${lang}" is a runtime name, not an OpenFaaS template funcd knows`);
    return undefined;
  }
  out.runtime = runtime;
  const handlerDir = f.string(fn, "handler", path);
  if (handlerDir === undefined) {
    f.problem(child(path, "handler"), "is required: the function's folder, relative to the stack file");
    return undefined;
  }
  f.honour();
  const shim = openfaasShim(style);
  out.handler = shim.handler;
  out.handlerStyle = "kubeless";

  if (fn.image !== undefined) {
    f.ignore(
      child(path, "image"),
      "funcd builds its own image per revision (funcd/<name>:<hash>) or runs the code without one; it does not pull this tag",
    );
  }
  const env: Record<string, string> = {};
  for (const file of f.list(fn, "environment_file", path) ?? []) {
    const at = child(path, "environment_file");
    if (typeof file !== "string") {
      f.problem(at, "must list file paths");
      continue;
    }
    const text = includes[file];
    if (text === undefined) {
      f.problem(at, `${file} was not sent with the stack (funcd apply -f sends the files it names)`);
      continue;
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      f.problem(at, `${file} is not YAML: ${(err as Error).message}`);
      continue;
    }
    const map = isRecord(parsed) && isRecord(parsed.environment) ? parsed.environment : undefined;
    if (!map) {
      f.problem(at, `${file} needs an environment: map`);
      continue;
    }
    for (const [k, v] of Object.entries(map)) env[k] = v === null || v === undefined ? "" : String(v);
    f.honour();
  }
  Object.assign(env, f.stringMap(fn, "environment", path));
  if (fn.environment !== undefined) f.honour();
  if (Object.keys(env).length > 0) {
    out.env = env;
    // The watchdog's timeout variables: exec_timeout (else write_timeout) is the invocation timeout.
    const timeout = env.exec_timeout ?? env.write_timeout;
    const ms = timeout === undefined ? undefined : parseDuration(timeout);
    if (ms !== undefined && ms > 0) out.timeout = `${Math.min(ms, 900_000)}ms`;
  }

  const secrets = f.list(fn, "secrets", path);
  if (secrets) {
    const names = secrets.filter((s): s is string => typeof s === "string");
    if (names.length !== secrets.length) f.problem(child(path, "secrets"), "must list secret names");
    out.secrets = names;
    f.honour();
    if (names.length > 0)
      f.notes.push(
        `secrets are files at /var/secrets/<name> (OpenFaaS: /var/openfaas/secrets/<name>) and env vars; FUNCD_SECRETS_DIR names the folder`,
      );
  }

  const labels = f.stringMap(fn, "labels", path) ?? {};
  const scale: Json = {};
  for (const [key, value] of Object.entries(labels)) {
    const at = child(child(path, "labels"), key);
    if (key === SCALE_LABELS.min || key === SCALE_LABELS.max) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) f.problem(at, `"${value}" is not a whole number`);
      else scale[key === SCALE_LABELS.min ? "min" : "max"] = n;
      f.honour();
    } else if (key === SCALE_LABELS.zero) {
      if (value === "false" && scale.min === undefined) scale.min = 1;
      f.honour();
    } else if (key.startsWith("com.openfaas.scale.")) {
      f.ignore(
        at,
        "funcd scales on requests in flight per instance (concurrency); this OpenFaaS scaling knob has no equivalent",
      );
    }
  }
  if (Object.keys(scale).length > 0) out.scale = scale;
  if (Object.keys(labels).length > 0) {
    out.labels = labels;
    f.honour();
  }
  const annotations = f.stringMap(fn, "annotations", path);
  if (annotations && Object.keys(annotations).length > 0) {
    out.annotations = annotations;
    f.honour();
  }
  const limits = f.record(fn, "limits", path);
  if (limits) {
    const at = child(path, "limits");
    f.rest(limits, at, ["memory", "cpu"]);
    const memory = f.string(limits, "memory", at);
    if (memory !== undefined) {
      const mib = memoryMiB(memory);
      if (mib === undefined) f.problem(child(at, "memory"), `"${memory}" is not a memory quantity (128Mi)`);
      else {
        out.memory = Math.max(32, mib);
        f.honour();
      }
    }
    const cpu = f.string(limits, "cpu", at);
    if (cpu !== undefined) {
      const value = cpuValue(cpu);
      if (value === undefined) f.problem(child(at, "cpu"), `"${cpu}" is not a CPU quantity (500m)`);
      else {
        out.cpu = value;
        f.honour();
      }
    }
  }
  if (fn.requests !== undefined) {
    f.ignore(
      child(path, "requests"),
      "funcd reserves nothing ahead: limits cap an instance, the scaler decides how many run",
    );
  }
  if (fn.readonly_root_filesystem !== undefined) {
    // Honoured either way: funcd's sandbox and containers always have a read-only root.
    f.honour();
    if (fn.readonly_root_filesystem === false)
      f.notes.push(
        "readonly_root_filesystem: false — funcd's instances always have a read-only root; write to /tmp",
      );
  }

  return {
    index: 0,
    format: "openfaas",
    label: `functions.${name}`,
    name,
    spec: out,
    code: { kind: "folder", path: handlerDir, extraFiles: { [shim.file]: shim.content } },
    ignored: f.ignored,
    notes: f.notes,
    honoured: f.honoured + 1,
  };
}
