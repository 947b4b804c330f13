/**
 * The bookkeeping every reader shares: paths in the `documents[2].spec.runtime` form, and the three piles
 * a field can land on — honoured, ignored (with the reason), or a problem that stops the document.
 */
import type { IgnoredField, ManifestProblem } from "./types.js";

export type Json = Record<string, unknown>;

export const isRecord = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** `base.key`, or `base["odd key"]` when the key is not a plain identifier. */
export function child(base: string, key: string | number): string {
  if (typeof key === "number") return `${base}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

/** Collects what one document's reading found. */
export class Findings {
  readonly ignored: IgnoredField[] = [];
  readonly problems: ManifestProblem[] = [];
  readonly notes: string[] = [];
  honoured = 0;

  ignore(path: string, reason: string): void {
    this.ignored.push({ path, reason });
  }

  problem(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  honour(count = 1): void {
    this.honoured += count;
  }

  /**
   * Reports every key of `value` that `handled` does not list as ignored: a field funcd does not know is
   * never dropped silently. `reasons` gives known-but-unsupported keys their own reason.
   */
  rest(value: Json, path: string, handled: readonly string[], reasons: Record<string, string> = {}): void {
    for (const key of Object.keys(value)) {
      if (handled.includes(key)) continue;
      this.ignore(child(path, key), reasons[key] ?? "funcd has no equivalent for this field");
    }
  }

  /** `value[key]` as a record (absent: undefined); anything else is a problem. */
  record(value: Json, key: string, path: string): Json | undefined {
    const v = value[key];
    if (v === undefined || v === null) return undefined;
    if (!isRecord(v)) {
      this.problem(child(path, key), "must be a map");
      return undefined;
    }
    return v;
  }

  /** `value[key]` as a string (numbers are turned into text); anything else is a problem. */
  string(value: Json, key: string, path: string): string | undefined {
    const v = value[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "boolean") return String(v);
    this.problem(child(path, key), "must be a string");
    return undefined;
  }

  /** `value[key]` as a list; anything else is a problem. */
  list(value: Json, key: string, path: string): unknown[] | undefined {
    const v = value[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) {
      this.problem(child(path, key), "must be a list");
      return undefined;
    }
    return v;
  }

  /** A map of string → string (labels, annotations, environment), values turned into text. */
  stringMap(value: Json, key: string, path: string): Record<string, string> | undefined {
    const map = this.record(value, key, path);
    if (!map) return undefined;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(map)) {
      if (v === null || v === undefined) out[k] = "";
      else if (typeof v === "object") this.problem(child(child(path, key), k), "must be a string");
      else out[k] = String(v);
    }
    return out;
  }
}

/** Kubernetes quantities of memory ("128Mi", "1Gi", "512M", "134217728") in MiB, rounded up. */
export function memoryMiB(quantity: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k|m)?$/.exec(quantity.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const factor: Record<string, number> = {
    "": 1 / 1024 ** 2,
    Ki: 1 / 1024,
    Mi: 1,
    Gi: 1024,
    Ti: 1024 ** 2,
    k: 1000 / 1024 ** 2,
    K: 1000 / 1024 ** 2,
    M: 1e6 / 1024 ** 2,
    G: 1e9 / 1024 ** 2,
    T: 1e12 / 1024 ** 2,
  };
  const f = factor[m[2] ?? ""];
  if (f === undefined || m[2] === "m") return undefined;
  return Math.ceil(n * f);
}

/** Kubernetes CPU quantities ("100m", "0.5", "2") as funcd's spec takes them ("100m" or a number). */
export function cpuValue(quantity: string): string | number | undefined {
  const q = quantity.trim();
  if (/^\d+m$/.test(q)) return q;
  if (/^\d+(\.\d+)?$/.test(q)) return Number(q);
  return undefined;
}
