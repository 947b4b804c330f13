/**
 * What a Swarm service of an instance looks like, as the Engine API's create body: pure, so the
 * hardening Swarm can express is read (and unit tested) in one place.
 *
 * One replicated service with one task per instance (see docs/architecture.md, "The swarm driver"):
 * endpoint mode `dnsrr` and port 8080 published in `host` mode at a port the node's engine picks —
 * the routing mesh and VIPs need IPVS, which not every kernel has, and the gateway wants to reach one
 * chosen task anyway. Hardened as far as a service spec goes (Engine API 1.41): non-root user, read-only
 * root file system with a 64 MiB tmpfs at /tmp, every capability dropped, `docker-init` as PID 1, pids
 * limit, memory limit and reservation, CPU limit, no restart by Swarm (funcd's fleet replaces an instance
 * that went away, so a task never comes back somewhere the gateway does not know), bounded json-file
 * logs. Secrets are Swarm secrets, mounted read-only at /var/secrets/<name>; their env-var form is read
 * from those files by a shell wrapper when the task starts, so no value is ever in the service spec.
 */
import { createHash } from "node:crypto";
import type Docker from "dockerode";
import { secretEnv, secretEnvName } from "../../shared/secret-names.js";
import { containerUser } from "../common/container-user.js";
import { contractEnv } from "../common/contract-env.js";
import { LABELS } from "../common/engine.js";
import type { InstanceSpec } from "../driver.js";

/** The port the runtime listens on inside the task's container. */
export const TASK_PORT = 8080;
export const FUNCTION_DIR = "/function";
export const SECRETS_DIR = "/var/secrets";
export const PIDS_LIMIT = 256;
const TMP_BYTES = 64 * 1024 * 1024;
const BASE_ENV = { HOME: "/tmp", NODE_ENV: "production" } as const;
/** Lists `VAR=secret-name` pairs for the wrapper: names only, never values. */
export const SECRET_VARS_ENV = "FUNCD_SECRET_VARS";

/** A Swarm secret the service mounts: its engine id and name, and the funcd secret it holds. */
export interface MountedSecret {
  id: string;
  swarmName: string;
  name: string;
}

export interface ServicePlan {
  spec: InstanceSpec;
  /** The image by digest (`registry/repo@sha256:…`). */
  image: string;
  /** The image's `USER`, to decide whether it may be kept. */
  imageUser: string | undefined;
  /** The image's entrypoint + command: what the secrets wrapper execs. */
  imageCommand: string[];
  daemonId: string;
  secrets: MountedSecret[];
  /** How long a task gets between SIGTERM and SIGKILL when it is shut down. */
  stopGraceMs: number;
}

/** A service name for an instance: Swarm allows 63 characters of `[A-Za-z0-9-]`. */
export function serviceName(instanceId: string): string {
  const name = `funcd-${instanceId.replace(/[^A-Za-z0-9-]/g, "-")}`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(instanceId).digest("hex").slice(0, 12);
  return `${name.slice(0, 50)}-${hash}`;
}

/** The labels of an instance's service (and of the Swarm secrets it made). */
export function serviceLabels(spec: InstanceSpec, daemonId: string): Record<string, string> {
  return {
    [LABELS.managed]: "true",
    [LABELS.daemon]: daemonId,
    [LABELS.function]: spec.functionName,
    [LABELS.revision]: spec.revisionId,
    [LABELS.instance]: spec.instanceId,
    [LABELS.kind]: "instance",
  };
}

/**
 * The Swarm secret holding one value: named by this daemon and a hash of the secret's name and value, so
 * a new value is a new secret (Swarm secrets cannot change) and services of one value share it.
 */
export function swarmSecretName(daemonId: string, name: string, value: Uint8Array): string {
  const hash = createHash("sha256").update(name).update("\0").update(value).digest("hex").slice(0, 16);
  return `funcd-${daemonId}-${hash}`.slice(0, 64);
}

/**
 * The instance's environment: the contract's, without the secrets' values (their variables come from the
 * files, by the wrapper), plus the wrapper's list of which variable reads which file.
 */
export function serviceEnv(spec: InstanceSpec): Record<string, string> {
  const hasSecrets = spec.secrets !== undefined && Object.keys(spec.secrets).length > 0;
  const { secrets: _values, ...withoutValues } = spec;
  const env = contractEnv(withoutValues, BASE_ENV, {
    listen: String(TASK_PORT),
    functionDir: FUNCTION_DIR,
    ...(hasSecrets ? { secretsDir: SECRETS_DIR } : {}),
  });
  if (hasSecrets) {
    const vars = secretEnv(spec.secrets, spec.env);
    const pairs = Object.keys(spec.secrets ?? {})
      .filter((name) => Object.hasOwn(vars, secretEnvName(name)))
      .map((name) => `${secretEnvName(name)}=${name}`);
    if (pairs.length > 0) env[SECRET_VARS_ENV] = pairs.join(" ");
  }
  return env;
}

/**
 * Sets each listed variable from its secret file, then runs the image's own command. `$(cat …)` drops
 * trailing newlines, as a shell does; the file keeps the exact bytes.
 */
const SECRETS_WRAPPER = [
  `for pair in $${SECRET_VARS_ENV}; do`,
  `  export "\${pair%%=*}=$(cat "${SECRETS_DIR}/\${pair#*=}")"`,
  "done",
  `unset ${SECRET_VARS_ENV}`,
  'exec "$@"',
].join("\n");

/** The Engine API's create body for the service of one instance (`POST /services/create`). */
export function serviceSpec(plan: ServicePlan): Docker.CreateServiceOptions {
  const { spec } = plan;
  const env = serviceEnv(spec);
  const user = containerUser(plan.imageUser);
  const ids = /^(\d+)(?::(\d+))?$/.exec(user);
  const memory = spec.memoryMb * 1024 * 1024;
  const wrapped = env[SECRET_VARS_ENV] !== undefined && plan.imageCommand.length > 0;
  const nano = spec.cpus === undefined ? undefined : Math.round(spec.cpus * 1e9);
  const containerSpec = {
    Image: plan.image,
    Labels: serviceLabels(spec, plan.daemonId),
    ...(wrapped ? { Command: ["/bin/sh", "-c", SECRETS_WRAPPER, "sh", ...plan.imageCommand] } : {}),
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    User: user,
    Init: true,
    ReadOnly: true,
    CapabilityDrop: ["ALL"],
    Mounts: [{ Type: "tmpfs", Target: "/tmp", TmpfsOptions: { SizeBytes: TMP_BYTES, Mode: 0o1777 } }],
    StopGracePeriod: Math.max(0, plan.stopGraceMs) * 1e6,
    Secrets: plan.secrets.map((secret) => ({
      SecretID: secret.id,
      SecretName: secret.swarmName,
      File: {
        Name: `${SECRETS_DIR}/${secret.name}`,
        UID: ids?.[1] ?? "0",
        GID: ids?.[2] ?? ids?.[1] ?? "0",
        Mode: 0o400,
      },
    })),
  };
  return {
    Name: serviceName(spec.instanceId),
    Labels: serviceLabels(spec, plan.daemonId),
    TaskTemplate: {
      ContainerSpec: containerSpec as Docker.ContainerSpec,
      Resources: {
        // Pids in a service's limits: Engine API 1.41 (Docker 20.10) and later.
        Limits: { MemoryBytes: memory, Pids: PIDS_LIMIT, ...(nano === undefined ? {} : { NanoCPUs: nano }) },
        Reservations: { MemoryBytes: memory },
      } as Docker.ResourceRequirements,
      // funcd's fleet replaces an instance that went away; Swarm restarting it would make a second owner.
      RestartPolicy: { Condition: "none" },
      LogDriver: { Name: "json-file", Options: { "max-size": "10m", "max-file": "2" } },
    },
    Mode: { Replicated: { Replicas: 1 } },
    EndpointSpec: {
      Mode: "dnsrr",
      Ports: [{ Protocol: "tcp", TargetPort: TASK_PORT, PublishMode: "host" }],
    },
  };
}
