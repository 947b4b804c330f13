import { InvalidArgumentError } from "commander";
import { parseDuration } from "../shared/duration.js";

/**
 * Parsers for option values. They throw commander's InvalidArgumentError so a
 * bad value is reported like any other usage mistake (exit 2).
 */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number between ${min} and ${max}, got "${value}"`);
    }
    return n;
  };
}

/** Keeps the value as the user wrote it (the daemon parses durations) after checking it parses. */
export function duration(value: string): string {
  if (parseDuration(value) === undefined) {
    throw new InvalidArgumentError(`"${value}" is not a duration (write e.g. 30s, 500ms, 5m)`);
  }
  return value;
}

/** For repeatable options: `--route /a --route /b`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--env K=V` (repeatable) into a record; the value may contain `=`. */
export function keyValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** `--header "K: V"` (repeatable); the first colon separates name and value. */
export function header(value: string, previous: Array<[string, string]> = []): Array<[string, string]> {
  const colon = value.indexOf(":");
  const name = colon > 0 ? value.slice(0, colon).trim() : "";
  if (!name) throw new InvalidArgumentError(`expected "Name: value", got "${value}"`);
  return [...previous, [name, value.slice(colon + 1).trim()]];
}
