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

export type DriverEvent = { type: "exit"; instanceId: string; functionName: string; exit: InstanceExit };

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
  /** Remove what a previous daemon run left behind (processes, sockets, cgroups). */
  reconcile(): Promise<{ removed: number }>;
  /** Stop every instance and release resources. */
  dispose(): Promise<void>;
}

/** Where a driver sends instance output. Injected at construction. */
export type LogSink = (line: LogLine) => void;
