/**
 * The Driver interface: the only thing the scaler knows about where instances
 * run. Deliberately narrow — start, stop, list, events, reconcile, dispose —
 * routing, proxying and scaling decisions live in the gateway and scaler.
 */

/** Where the gateway reaches an instance: a unix socket (process driver) or host:port (docker). */
export type InstanceAddress = { socketPath: string } | { host: string; port: number };

export type InstanceState = "starting" | "ready" | "draining" | "stopped" | "failed";

/** Why an instance went away. `OOMKilled` is reported when the memory limit killed it. */
/** `unhealthy` is the fleet's verdict (failed health checks), not a driver's: the instance was stopped for it. */
export type ExitReason = "stopped" | "exited" | "crashed" | "OOMKilled" | "start-failed" | "unhealthy";

export interface InstanceExit {
  reason: ExitReason;
  code: number | null;
  signal: string | null;
  /** The last lines the instance wrote, for crash reports. */
  lastLogLines: string[];
}

/** Everything a driver needs to start one instance of one revision. */
export interface InstanceSpec {
  /** Unique per instance, chosen by the caller (e.g. `sum-3f9a-1`). */
  instanceId: string;
  functionName: string;
  revisionId: string;
  runtime: string;
  /** Absolute path of the prepared function folder (read-only inside the sandbox). */
  artifactDir: string;
  /** `file.export`, e.g. `handler.main`. */
  handler: string;
  /** How the runtime calls the handler (`FUNCD_HANDLER_STYLE`); the runtime's default is `auto`. */
  handlerStyle?: "auto" | "kubeless" | "lambda";
  /** The function's own environment; the driver adds the runtime contract variables. */
  env: Record<string, string>;
  memoryMb: number;
  timeoutMs: number;
  /**
   * Drivers that run images (docker): the revision's own image, with the function's code and dependencies
   * inside. Absent: the runtime's prebuilt image with `artifactDir` mounted read-only (buildless mode).
   * The process driver ignores it.
   */
  image?: string;
  /** CPU limit in cores (0.5 = half a core); absent = no limit beyond the machine's. */
  cpus?: number;
  /** `none`: the instance may not open connections of its own (it still answers the gateway). Default `default`. */
  network?: "default" | "none";
  /**
   * The function's secrets, name → value (bytes), resolved at start: each becomes an env var when it is
   * text (see `src/shared/secret-names.ts`). Never logged, never written anywhere but `secretsDir`.
   */
  secrets?: Record<string, Buffer>;
  /** Variables set from a secret's text value, VAR → secret name (a Kubernetes `secretKeyRef`, mapped). */
  secretEnv?: Record<string, string>;
  /**
   * Host folder holding one read-only file per secret (on a tmpfs; see `src/drivers/secrets/`): the driver
   * mounts it read-only at `/var/secrets`. Set by `SecretsDriver`, which writes and removes it.
   */
  secretsDir?: string;
}

export interface InstanceInfo {
  instanceId: string;
  functionName: string;
  revisionId: string;
  address: InstanceAddress;
  state: InstanceState;
  startedAt: number;
  pid?: number;
  exit?: InstanceExit;
  /** Set when the instance is a warm-pool runtime specialized into the function (the pool logged its start). */
  fromPool?: boolean;
  /**
   * Set when `reconcile()` took the instance over from a previous daemon run (it was still running and
   * healthy) instead of removing it; the fleet claims such instances for their revision.
   */
  adopted?: boolean;
}

export interface LogLine {
  time: number;
  functionName: string;
  revisionId: string;
  instanceId: string;
  stream: "stdout" | "stderr" | "system";
  /** Set when the runtime tagged the line with the invocation's request id. */
  requestId?: string;
  text: string;
}

/**
 * `exit`: an instance went away unasked (for the scaler). `generic-exit`: a generic (pool) instance that
 * was never specialized went away unasked (for the pool only; the scaler never knew it).
 */
export type DriverEvent =
  | { type: "exit"; instanceId: string; functionName: string; exit: InstanceExit }
  | { type: "generic-exit"; poolId: string; runtime: string; exit: InstanceExit };

export interface StartOptions {
  /** Abort the start (the instance is killed and `start` rejects). */
  signal?: AbortSignal;
  /** How long to wait for `/healthz` to answer ready. */
  readyTimeoutMs?: number;
}

export interface Driver {
  readonly name: string;
  /**
   * Start an instance and resolve once its `/healthz` answers ready. Rejects
   * with a `FuncdError` (`HANDLER_LOAD_FAILED` carrying the instance's output
   * when the handler cannot be imported) and leaves nothing running.
   */
  start(spec: InstanceSpec, options?: StartOptions): Promise<InstanceInfo>;
  /** Stop an instance: SIGTERM, then SIGKILL after `graceMs`. Resolves when it is gone. */
  stop(instanceId: string, options?: { graceMs?: number }): Promise<void>;
  /** The instances this driver currently runs. */
  list(): InstanceInfo[];
  /**
   * Subscribe to exits nobody asked for (crashes, OOM kills, a runtime that exited by itself); `stop()`
   * and failed starts emit nothing. Returns an unsubscribe function.
   */
  onEvent(listener: (event: DriverEvent) => void): () => void;
  /**
   * Remove what a previous daemon run left behind (processes, sockets, cgroups). A driver may instead
   * adopt instances that still run healthy (listed with `adopted: true`); `removed` counts removals only.
   */
  reconcile(): Promise<{ removed: number }>;
  /** Stop every instance and release resources. */
  dispose(): Promise<void>;

  /**
   * Optional, for drivers that can keep a warm pool: start a *generic* instance of `runtime` — the
   * runtime booted and sandboxed with `memoryMb` as its limit, but no function loaded — and resolve once
   * it answers `/healthz`. It is not listed by `list()` and its exit is reported as `generic-exit`, not
   * `exit`, until it is specialized. Rejects with `UNKNOWN_RUNTIME` when the runtime has no generic mode.
   * Stop it with `stop(poolId)`.
   */
  startGeneric?(runtime: string, options: GenericStartOptions): Promise<GenericInstance>;
  /**
   * Optional, with `startGeneric`: turn the ready generic instance `poolId` into an instance of `spec`
   * (its code, env and identity; re-keyed under `spec.instanceId`), resolving as `start` does. Refuses
   * — rejects with `extra.refused === true`, leaving the generic instance as it was, still generic — when
   * `spec.runtime` or `spec.memoryMb` differ from the generic instance's (or the function needs something
   * only a fresh boot gives), so the caller can start normally instead. Any other failure rejects with the
   * codes `start` uses (`HANDLER_LOAD_FAILED` with the output) and leaves nothing running.
   */
  specialize?(poolId: string, spec: InstanceSpec, options?: StartOptions): Promise<InstanceInfo>;
}

export interface GenericStartOptions {
  /** Unique among the driver's instances, like an instance id (e.g. `pool-nodejs20-1`). */
  poolId: string;
  /** The memory limit the instance runs under; only functions with the same limit can be specialized into it. */
  memoryMb: number;
  signal?: AbortSignal;
  readyTimeoutMs?: number;
}

export interface GenericInstance {
  poolId: string;
  pid?: number;
}

/** Where a driver sends instance output. Injected at construction. */
export type LogSink = (line: LogLine) => void;
