import { secretAliasEnv, secretEnv } from "../../shared/secret-names.js";
import type { InstanceSpec } from "../driver.js";

/** Where an instance finds things, as the runtime sees them from inside its sandbox or container. */
export interface ContractPaths {
  /** `FUNCD_LISTEN`: a unix socket path, or a port. */
  listen: string;
  /** `FUNCD_FUNCTION_DIR`. */
  functionDir: string;
  /** `FUNCD_SECRETS_DIR`, when the instance has secret files. */
  secretsDir?: string;
}

/**
 * The environment an instance starts with, per docs/runtime-contract.md: the driver's base (`HOME`,
 * `NODE_ENV`, a `PATH` where the image does not bring one), the function's secrets as variables, the
 * function's own env, then the contract variables — last, so the function's env cannot override them.
 * Both drivers build it here so a process and a container of one revision see the same variables.
 */
export function contractEnv(
  spec: InstanceSpec,
  base: Readonly<Record<string, string>>,
  paths: ContractPaths,
): Record<string, string> {
  return {
    ...base,
    ...secretEnv(spec.secrets, spec.env),
    ...spec.env,
    ...secretAliasEnv(spec.secrets, spec.secretEnv),
    FUNCD_LISTEN: paths.listen,
    FUNCD_FUNCTION_DIR: paths.functionDir,
    FUNCD_HANDLER: spec.handler,
    FUNCD_FUNCTION_NAME: spec.functionName,
    FUNCD_REVISION: spec.revisionId,
    FUNCD_RUNTIME: spec.runtime,
    FUNCD_TIMEOUT_MS: String(spec.timeoutMs),
    FUNCD_MEMORY_LIMIT_MB: String(spec.memoryMb),
    ...(spec.handlerStyle ? { FUNCD_HANDLER_STYLE: spec.handlerStyle } : {}),
    ...(paths.secretsDir === undefined ? {} : { FUNCD_SECRETS_DIR: paths.secretsDir }),
  };
}
