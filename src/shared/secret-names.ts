/**
 * Secret names and the environment variable each one becomes. Shared by the spec, the API and both
 * drivers, so the rule lives in one place (and `docs/secrets.md` describes this function).
 */

/** A secret's name: letters (either case), digits, `_`, `.` and `-`, starting with a letter or digit. */
export const SECRET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Secrets one function may use. */
export const MAX_SECRETS_PER_FUNCTION = 32;

/** Largest secret value, in bytes: a secret is a credential or a certificate, not a data file. */
export const MAX_SECRET_BYTES = 64 * 1024;

/**
 * The environment variable a secret is exposed as: upper-cased, every character that is not a letter
 * or digit turned into `_`, and a leading digit prefixed with `_` (a variable name cannot start with
 * one). `db-password` → `DB_PASSWORD`, `api.key` → `API_KEY`, `1password` → `_1PASSWORD`.
 */
export function secretEnvName(name: string): string {
  const upper = name.toUpperCase().replace(/[^A-Z0-9]/g, "_");
  return /^[0-9]/.test(upper) ? `_${upper}` : upper;
}

/** Variables funcd sets itself, which no secret may replace (the runtime contract and the base env). */
export function isReservedEnvName(name: string): boolean {
  return name.startsWith("FUNCD_") || name === "PATH" || name === "HOME" || name === "NODE_ENV";
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The value as an env var can hold it: UTF-8 text without NUL; undefined for other bytes. */
function asText(value: Uint8Array): string | undefined {
  try {
    const text = utf8.decode(value);
    return text.includes("\0") ? undefined : text;
  } catch {
    return undefined;
  }
}

/**
 * The variables an instance's secrets add to its environment: one per secret, except where the
 * function's own `env` already has that name (the function's setting wins), where funcd sets it, and
 * for a value that is not text (UTF-8 without NUL bytes): such a value comes only as its file.
 */
export function secretEnv(
  secrets: Readonly<Record<string, Uint8Array>> | undefined,
  env: Readonly<Record<string, string>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (secrets === undefined) return out;
  for (const [name, value] of Object.entries(secrets)) {
    const key = secretEnvName(name);
    const text = asText(value);
    if (text === undefined || Object.hasOwn(env, key) || isReservedEnvName(key)) continue;
    out[key] = text;
  }
  return out;
}

/**
 * The variables a spec's `secretEnv` (VAR → secret name) adds: each secret's value under the name the
 * function asked for, when it is text and the name is not one funcd sets. This is how a Kubernetes
 * `env[].valueFrom.secretKeyRef` keeps its variable name on funcd; it wins over the function's `env`
 * (it was written as that variable's source).
 */
export function secretAliasEnv(
  secrets: Readonly<Record<string, Uint8Array>> | undefined,
  aliases: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (secrets === undefined || aliases === undefined) return out;
  for (const [key, name] of Object.entries(aliases)) {
    const value = secrets[name];
    const text = value === undefined ? undefined : asText(value);
    if (text === undefined || isReservedEnvName(key)) continue;
    out[key] = text;
  }
  return out;
}
