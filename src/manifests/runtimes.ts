/**
 * Other platforms' runtime names → funcd's. A name the daemon has (an alias included) is used as it is;
 * Kubeless' and OpenFaaS' older Node and Python versions run on funcd's Node or Python with a note; any
 * other name is a problem that lists what the daemon has.
 */
import type { ManifestFormat, RuntimeLookup } from "./types.js";
import type { Findings } from "./walk.js";

/** OpenFaaS templates funcd runs, and the handler shape each one has (see openfaas-shims.ts). */
export const OPENFAAS_LANGS: Record<string, { runtime: string; style: OpenfaasStyle }> = {
  node: { runtime: "nodejs20", style: "node-classic" },
  node12: { runtime: "nodejs20", style: "node-http" },
  node14: { runtime: "nodejs20", style: "node-http" },
  node16: { runtime: "nodejs20", style: "node-http" },
  node17: { runtime: "nodejs20", style: "node-http" },
  node18: { runtime: "nodejs20", style: "node-http" },
  node20: { runtime: "nodejs20", style: "node-http" },
  python: { runtime: "python3", style: "python-classic" },
  python3: { runtime: "python3", style: "python-classic" },
  "python3-flask": { runtime: "python3", style: "python-classic" },
  "python3-flask-debian": { runtime: "python3", style: "python-classic" },
  "python3-http": { runtime: "python3", style: "python-http" },
  "python3-http-debian": { runtime: "python3", style: "python-http" },
};

export type OpenfaasStyle = "node-classic" | "node-http" | "python-classic" | "python-http";

/** The funcd runtime for `raw` written in `format`, or undefined after recording a problem at `path`. */
export function mapRuntime(
  format: ManifestFormat,
  raw: string,
  path: string,
  f: Findings,
  runtimes: RuntimeLookup,
): string | undefined {
  const direct = runtimes.resolve(raw);
  if (direct !== undefined) {
    f.honour();
    return raw;
  }
  let fallback: string | undefined;
  if (format === "kubeless" && /^nodejs\d+$/.test(raw)) fallback = "nodejs20";
  if (format === "kubeless" && /^python(2\.7|3(\.\d+)?)$/.test(raw)) fallback = "python3";
  if (format === "openfaas") fallback = OPENFAAS_LANGS[raw]?.runtime;
  if (fallback !== undefined && runtimes.resolve(fallback) !== undefined) {
    f.honour();
    if (format !== "openfaas") f.notes.push(`runtime ${raw} runs on funcd's ${fallback}`);
    return fallback;
  }
  const known =
    format === "openfaas" ? ` (funcd runs the templates ${Object.keys(OPENFAAS_LANGS).join(", ")})` : "";
  f.problem(
    path,
    `runtime "${raw}" is not available on this daemon; it has ${runtimes.names().join(", ") || "none"}${known}`,
  );
  return undefined;
}
