/**
 * The command line and environment of one instance. The layers, outermost first:
 *
 *   /bin/sh -c 'enter cgroup; exec …'   (memory cgroup: joined before anything is allocated)
 *   setpriv --reuid=U …                 (daemon is root: drop to the function's uid)
 *   bwrap …                             (sandbox)
 *   node --max-old-space-size=N /runtime/server.mjs
 */
import { contractEnv } from "../common/contract-env.js";
import type { InstanceSpec } from "../driver.js";
import { heapFlags, type InstanceCgroup } from "./memory.js";
import type { SandboxPlan } from "./plans.js";
import type { instancePaths } from "./rundir.js";
import { bwrapArgs, dropPrivilegesArgs, SANDBOX_PATHS } from "./sandbox.js";
import { commandLine, type RuntimeTemplate } from "./template.js";

/** The environment every instance gets besides its function's env and the contract variables. */
const BASE_ENV = { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/tmp", NODE_ENV: "production" } as const;

export interface Launch {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

export interface LaunchInput {
  spec: InstanceSpec;
  template: RuntimeTemplate;
  sandbox: SandboxPlan;
  paths: ReturnType<typeof instancePaths>;
  /** The uid to drop to; undefined when the daemon is not root (the instance runs as the daemon's uid). */
  uid: number | undefined;
  cgroup: InstanceCgroup | undefined;
  /**
   * A generic (warm pool) instance: `spec` only names the runtime and memory limit, `spec.artifactDir`
   * is the empty slot dir, and the runtime boots in its generic mode without a handler.
   */
  generic?: boolean;
}

/** Where the runtime finds its socket and function dir: sandbox paths, or host paths without bwrap. */
export interface InsidePaths {
  listen: string;
  functionDir: string;
  /** Where its secret files are (`FUNCD_SECRETS_DIR`), when it has any. */
  secretsDir?: string;
}

/**
 * The paths an instance sees, for `instanceEnv`. Without bwrap nothing can be mounted, so the instance
 * reads its secrets at their real (tmpfs) path, which `FUNCD_SECRETS_DIR` names.
 */
export function insidePaths(
  sandboxed: boolean,
  socketPath: string,
  functionDir: string,
  secretsDir?: string,
): InsidePaths {
  const secrets =
    secretsDir === undefined ? {} : { secretsDir: sandboxed ? SANDBOX_PATHS.secrets : secretsDir };
  return sandboxed
    ? { listen: `${SANDBOX_PATHS.run}/sock`, functionDir: SANDBOX_PATHS.function, ...secrets }
    : { listen: socketPath, functionDir, ...secrets };
}

/**
 * The whole environment of an instance of `spec`: the base, its secrets' variables, the function's own
 * env (which wins over a secret of the same variable name), the contract variables. Never the daemon's
 * environment: it holds credentials, and e.g. NODE_EXTRA_CA_CERTS costs every start. A specialized pool
 * instance gets exactly this too, so both ways of starting agree.
 */
export function instanceEnv(spec: InstanceSpec, inside: InsidePaths): Record<string, string> {
  return contractEnv(spec, BASE_ENV, {
    listen: inside.listen,
    functionDir: inside.functionDir,
    ...(inside.secretsDir === undefined ? {} : { secretsDir: inside.secretsDir }),
  });
}

/** A generic instance's environment: no function yet, only where it listens, its runtime and limit. */
function genericEnv(spec: InstanceSpec, inside: InsidePaths): Record<string, string> {
  return {
    ...BASE_ENV,
    FUNCD_GENERIC: "1",
    FUNCD_LISTEN: inside.listen,
    FUNCD_FUNCTION_DIR: inside.functionDir,
    FUNCD_RUNTIME: spec.runtime,
    FUNCD_MEMORY_LIMIT_MB: String(spec.memoryMb),
  };
}

export function buildLaunch({ spec, template, sandbox, paths, uid, cgroup, generic }: LaunchInput): Launch {
  const sandboxed = sandbox.kind === "bwrap";
  const limitBytes = spec.memoryMb * 1024 * 1024;
  const interpreter = "interpreter" in template.program ? template.program.interpreter : undefined;
  let argv = commandLine(
    template,
    sandboxed ? SANDBOX_PATHS.runtime : template.dir,
    // Also under a cgroup: V8 should collect garbage before the hard limit, not be killed at it.
    interpreter === undefined ? [] : heapFlags(interpreter.name, spec.memoryMb),
  );
  if (sandbox.kind === "bwrap") {
    const mounts = {
      templateDir: template.dir,
      artifactDir: spec.artifactDir,
      socketDir: paths.socketDir,
      tmpBytes: limitBytes,
      ...(interpreter?.prefix === undefined ? {} : { interpreterPrefix: interpreter.prefix }),
      ...(spec.secretsDir === undefined ? {} : { secretsDir: spec.secretsDir }),
    };
    argv = [...bwrapArgs(sandbox.bwrap, mounts), ...argv];
  }
  if (uid !== undefined && sandbox.setpriv !== undefined)
    argv = [...dropPrivilegesArgs(sandbox.setpriv, uid), ...argv];
  if (cgroup !== undefined) argv = cgroup.wrap(argv);

  const inside = insidePaths(sandboxed, paths.socketPath, spec.artifactDir, spec.secretsDir);
  const env = generic === true ? genericEnv(spec, inside) : instanceEnv(spec, inside);
  // bwrap sets the working dir itself (--chdir); without it the function's folder is the working dir.
  return { argv, env, cwd: sandboxed ? "/" : spec.artifactDir };
}
