/**
 * Naming revisions: a revision's id is a content hash of what runs (spec fields that change an instance,
 * files, dependency key), so an identical deploy is a no-op and one that changes only routes or scale
 * makes no new revision.
 */
import { createHash } from "node:crypto";
import type { ManifestEntry } from "../store/types.js";
import type { FunctionSpec } from "./spec.js";

/**
 * Spec fields that change what runs inside an instance; the rest (routes, scale, labels, tests) apply
 * live. Fields added later appear only when they differ from their default, so revisions deployed
 * before they existed keep their ids.
 */
function instanceSpec(spec: FunctionSpec) {
  return {
    runtime: spec.runtime,
    handler: spec.handler,
    env: spec.env,
    memory: spec.memory,
    timeout: spec.timeout,
    ...(spec.handlerStyle && spec.handlerStyle !== "auto" ? { handlerStyle: spec.handlerStyle } : {}),
    ...(spec.cpu === undefined ? {} : { cpu: spec.cpu }),
    ...(spec.network === "none" ? { network: spec.network } : {}),
    ...(spec.build === "none" ? { build: spec.build } : {}),
    ...(spec.baseImage === undefined ? {} : { baseImage: spec.baseImage }),
    // Names only (values change without a new revision: the instances are recycled instead); sorted,
    // because the order they are listed in changes nothing.
    ...(spec.secrets === undefined || spec.secrets.length === 0 ? {} : { secrets: [...spec.secrets].sort() }),
    ...(spec.secretEnv === undefined || Object.keys(spec.secretEnv).length === 0
      ? {}
      : { secretEnv: Object.fromEntries(Object.entries(spec.secretEnv).sort()) }),
  };
}

/** The spec fields a rollback takes from the revision it goes back to: everything `instanceSpec` covers. */
const RUN_FIELDS = [
  "runtime",
  "handler",
  "handlerStyle",
  "env",
  "memory",
  "timeout",
  "cpu",
  "network",
  "build",
  "baseImage",
  "profile",
  "secrets",
  "secretEnv",
] as const satisfies readonly (keyof FunctionSpec)[];

type RunField = (typeof RUN_FIELDS)[number];

/**
 * Those fields of `spec`, absent ones included as `undefined`: spread over another spec, a field the
 * target revision did not set must clear the current one (a rollback to a revision without `cpu` has no
 * CPU limit).
 */
export function runFields(spec: FunctionSpec): Pick<FunctionSpec, RunField> {
  const out: Record<string, unknown> = {};
  for (const field of RUN_FIELDS) out[field] = spec[field];
  return out as Pick<FunctionSpec, RunField>;
}

/**
 * The content hash that names a revision: function, what runs, every file's hash and mode, and the
 * dependency install's key (so a change in how dependencies resolve is a new revision). Revisions
 * without dependencies hash as they did before dependencies were installed.
 */
export function revisionId(
  name: string,
  spec: FunctionSpec,
  manifest: readonly ManifestEntry[],
  depsKey: string | null = null,
): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ name, ...instanceSpec(spec) }));
  for (const f of [...manifest].sort((x, y) => (x.path < y.path ? -1 : 1))) {
    hash.update(`\n${f.path}\0${f.hash}\0${f.mode}`);
  }
  if (depsKey) hash.update(`\ndeps\0${depsKey}`);
  return hash.digest("hex").slice(0, 20);
}
