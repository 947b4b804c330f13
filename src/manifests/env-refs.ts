/**
 * Kubernetes `env` lists (Kyma's `spec.env`, a Kubeless deployment's container env) as funcd sees them:
 * plain values become `env`; `secretKeyRef` and `configMapKeyRef` become funcd secrets named
 * `<secret or configmap>.<key>` (one funcd secret per key, since a funcd secret is one value), listed in
 * `secrets` and bound to the variable's own name through `secretEnv`. funcd has no ConfigMaps: their values
 * are set as secrets too (`funcd secret set app-config.LOG_LEVEL`), which keeps them out of revisions and
 * lets them change without a redeploy, as a ConfigMap does.
 */
import { SECRET_NAME } from "../shared/secret-names.js";
import { child, type Findings, isRecord } from "./walk.js";

export interface EnvResult {
  env: Record<string, string>;
  secrets: string[];
  secretEnv: Record<string, string>;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The funcd secret a Kubernetes Secret or ConfigMap key maps to. */
export function refSecretName(object: string, key: string): string {
  return `${object}.${key}`;
}

/** Reads a Kubernetes EnvVar list at `path` into `out`. */
export function readEnvList(list: unknown[], path: string, f: Findings, out: EnvResult): void {
  list.forEach((item, i) => {
    const at = child(path, i);
    if (!isRecord(item)) {
      f.problem(at, "must be a map with name and value (or valueFrom)");
      return;
    }
    const name = f.string(item, "name", at);
    if (name === undefined) {
      f.problem(child(at, "name"), "is required");
      return;
    }
    if (!ENV_NAME.test(name)) {
      f.problem(child(at, "name"), `"${name}" is not an environment variable name`);
      return;
    }
    f.rest(item, at, ["name", "value", "valueFrom"]);
    if (item.valueFrom === undefined) {
      out.env[name] = f.string(item, "value", at) ?? "";
      f.honour();
      return;
    }
    const from = f.record(item, "valueFrom", at);
    if (!from) return;
    const fromPath = child(at, "valueFrom");
    const refKind = ["secretKeyRef", "configMapKeyRef"].find((k) => from[k] !== undefined);
    f.rest(from, fromPath, refKind ? [refKind] : [], {
      fieldRef: "funcd runs no pods: there is no pod field to read (set the value in env)",
      resourceFieldRef: "funcd sets FUNCD_MEMORY_LIMIT_MB itself; there is no container resource to read",
    });
    if (!refKind) return;
    const ref = f.record(from, refKind, fromPath);
    if (!ref) return;
    const refPath = child(fromPath, refKind);
    const object = f.string(ref, "name", refPath);
    const key = f.string(ref, "key", refPath);
    if (object === undefined || key === undefined) {
      f.problem(refPath, "needs name and key");
      return;
    }
    f.rest(ref, refPath, ["name", "key"], {
      optional: "funcd secrets are never optional: a missing one fails the deploy, saying which",
    });
    const secret = refSecretName(object, key);
    if (!SECRET_NAME.test(secret)) {
      f.problem(
        refPath,
        `"${secret}" cannot be a funcd secret name (letters, digits, '_', '.', '-'; max 63)`,
      );
      return;
    }
    if (!out.secrets.includes(secret)) out.secrets.push(secret);
    out.secretEnv[name] = secret;
    f.honour();
    if (refKind === "configMapKeyRef") {
      f.notes.push(`env ${name}: ConfigMap ${object} key ${key} is read from the funcd secret "${secret}"`);
    }
  });
}

/** The spec fields an EnvResult adds (nothing for empty parts). */
export function envSpec(result: EnvResult): Record<string, unknown> {
  return {
    ...(Object.keys(result.env).length > 0 ? { env: result.env } : {}),
    ...(result.secrets.length > 0 ? { secrets: result.secrets } : {}),
    ...(Object.keys(result.secretEnv).length > 0 ? { secretEnv: result.secretEnv } : {}),
  };
}
