/**
 * `SecretsDriver` wraps a driver (process or docker) and delivers secrets as files: before an instance
 * with `spec.secrets` starts, it writes them to a per-instance folder on a tmpfs (`files.ts`) and hands
 * the driver that folder as `spec.secretsDir` — the driver mounts it read-only at `/var/secrets` and sets
 * the env vars. It removes the folder when the instance stops, exits or fails to start, on `reconcile()`
 * (folders of instances a previous run left) and on `dispose()`.
 *
 * The warm pool: a generic instance was booted without the function's secrets mounted, so it cannot
 * become an instance of a function that has some; `specialize` refuses such functions (they start
 * normally). Functions without secrets pass through untouched.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type {
  Driver,
  DriverEvent,
  GenericInstance,
  GenericStartOptions,
  InstanceInfo,
  InstanceSpec,
  StartOptions,
} from "../driver.js";
import {
  ensureSecretsBase,
  findSecretsBase,
  listSecretFolders,
  removeSecretFiles,
  type SecretOwner,
  writeSecretFiles,
} from "./files.js";

export interface SecretsDriverOptions {
  /** Unique per daemon (a hash of its data dir): names its folder on the tmpfs. */
  key: string;
  logger: Logger;
  /**
   * The uid an instance runs as, to own its secret files; undefined: the daemon's own (the process
   * driver when the daemon is not root).
   */
  owner?: (spec: InstanceSpec) => Promise<SecretOwner | undefined> | SecretOwner | undefined;
  /** Instance uids reach their folder through the base on the host (process driver as root): 0711, not 0700. */
  traversable?: boolean;
  /** The base folder to use instead of one found on a tmpfs (tests). */
  baseDir?: string;
}

/** True when the spec has secrets to deliver. */
export function hasSecrets(spec: Pick<InstanceSpec, "secrets">): boolean {
  return spec.secrets !== undefined && Object.keys(spec.secrets).length > 0;
}

/** Secrets as files for any driver; see the module comment. */
export class SecretsDriver implements Driver {
  readonly name: string;
  readonly startGeneric?: (runtime: string, options: GenericStartOptions) => Promise<GenericInstance>;
  readonly specialize?: (poolId: string, spec: InstanceSpec, options?: StartOptions) => Promise<InstanceInfo>;

  readonly #inner: Driver;
  readonly #o: SecretsDriverOptions;
  readonly #logger: Logger;
  /** Instances whose folder is being written or whose start is pending: reconcile leaves them alone. */
  readonly #starting = new Set<string>();
  #base: Promise<string> | undefined;
  #baseReady: Promise<string> | undefined;

  constructor(inner: Driver, options: SecretsDriverOptions) {
    this.#inner = inner;
    this.#o = options;
    this.#logger = options.logger;
    this.name = inner.name;
    const { startGeneric, specialize } = inner;
    if (startGeneric !== undefined) {
      this.startGeneric = (runtime, generic) => startGeneric.call(inner, runtime, generic);
    }
    if (specialize !== undefined) {
      this.specialize = async (poolId, spec, start) => {
        if (hasSecrets(spec)) {
          throw new FuncdError(
            "FUNCTION_UNAVAILABLE",
            `Function "${spec.functionName}" cannot be specialized from pool instance "${poolId}": it uses secrets, which only an instance of its own mounts`,
            { extra: { refused: true } },
          );
        }
        return specialize.call(inner, poolId, spec, start);
      };
    }
    // An instance that exits by itself (crash, OOM) takes its secret files with it.
    inner.onEvent((event) => {
      if (event.type === "exit") void this.#release(event.instanceId);
    });
  }

  async start(spec: InstanceSpec, options?: StartOptions): Promise<InstanceInfo> {
    if (!hasSecrets(spec)) return this.#inner.start(spec, options);
    const id = spec.instanceId;
    this.#starting.add(id);
    try {
      const base = await this.#ensureBase();
      const owner = await this.#o.owner?.(spec);
      options?.signal?.throwIfAborted();
      const dir = await writeSecretFiles(base, id, spec.secrets ?? {}, owner);
      try {
        return await this.#inner.start({ ...spec, secretsDir: dir }, options);
      } catch (err) {
        await removeSecretFiles(dir).catch(() => undefined);
        throw err;
      }
    } finally {
      this.#starting.delete(id);
    }
  }

  async stop(instanceId: string, options?: { graceMs?: number }): Promise<void> {
    try {
      await this.#inner.stop(instanceId, options);
    } finally {
      await this.#release(instanceId);
    }
  }

  list(): InstanceInfo[] {
    return this.#inner.list();
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    return this.#inner.onEvent(listener);
  }

  /** The wrapped driver's reconcile, then the secret folders of instances it does not run (any more). */
  async reconcile(): Promise<{ removed: number }> {
    const result = await this.#inner.reconcile();
    const base = await this.#basePath().catch(() => undefined);
    if (base === undefined) return result;
    // Adopted instances (docker, after a restart) still have their folder mounted: they keep it.
    const live = new Set([...this.#inner.list().map((i) => i.instanceId), ...this.#starting]);
    let stale = 0;
    for (const name of await listSecretFolders(base)) {
      if (live.has(name)) continue;
      await removeSecretFiles(join(base, name)).catch((err: unknown) => {
        this.#logger.warn({ dir: join(base, name), err: messageOf(err) }, "cannot remove secret files");
      });
      stale++;
    }
    if (stale > 0) this.#logger.info({ removed: stale }, "removed secret files an earlier run left");
    return result;
  }

  /** Disposes of the wrapped driver (every instance stops), then removes every secret folder. */
  async dispose(): Promise<void> {
    await this.#inner.dispose();
    const base = await this.#basePath().catch(() => undefined);
    if (base === undefined) return;
    for (const name of await listSecretFolders(base)) {
      await removeSecretFiles(join(base, name)).catch(() => undefined);
    }
    await removeSecretFiles(base).catch(() => undefined);
  }

  /** Removes an instance's secret folder, if it has one. */
  async #release(instanceId: string): Promise<void> {
    if (this.#starting.has(instanceId)) return;
    const base = await this.#basePath().catch(() => undefined);
    if (base === undefined) return;
    await removeSecretFiles(join(base, instanceId)).catch((err: unknown) => {
      this.#logger.warn({ instance: instanceId, err: messageOf(err) }, "cannot remove secret files");
    });
  }

  /** Where the folders go (found once; not created). */
  #basePath(): Promise<string> {
    if (this.#base === undefined) {
      const pending =
        this.#o.baseDir !== undefined ? Promise.resolve(this.#o.baseDir) : findSecretsBase(this.#o.key);
      // A failure is not kept: a tmpfs may be mounted later.
      pending.catch(() => {
        if (this.#base === pending) this.#base = undefined;
      });
      this.#base = pending;
    }
    return this.#base;
  }

  #ensureBase(): Promise<string> {
    if (this.#baseReady === undefined) {
      const pending = this.#basePath().then(async (base) => {
        await ensureSecretsBase(base, this.#o.traversable === true);
        return base;
      });
      pending.catch(() => {
        if (this.#baseReady === pending) this.#baseReady = undefined;
      });
      this.#baseReady = pending;
    }
    return this.#baseReady;
  }
}
