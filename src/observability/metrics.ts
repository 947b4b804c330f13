import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The daemon's Prometheus metrics, on a registry of its own (not prom-client's global). */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly invocations = new Counter({
    name: "funcd_invocations_total",
    help: "Invocations by function and HTTP status code",
    labelNames: ["function", "code"] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: "funcd_invocation_duration_seconds",
    help: "Invocation duration seen by the gateway, cold starts included",
    labelNames: ["function"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly coldStarts = new Counter({
    name: "funcd_cold_starts_total",
    help: "Instances started because a request found no capacity",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly coldStartDuration = new Histogram({
    name: "funcd_cold_start_duration_seconds",
    help: "Time from starting an instance to its first ready health check",
    labelNames: ["function"] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly instances = new Gauge({
    name: "funcd_instances",
    help: "Instances by function and state",
    labelNames: ["function", "state"] as const,
    registers: [this.registry],
  });
  readonly desiredInstances = new Gauge({
    name: "funcd_desired_instances",
    help: "Instances the autoscaler wants per function",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "funcd_queue_depth",
    help: "Requests waiting for an instance, per function",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly panicMode = new Gauge({
    name: "funcd_panic_mode",
    help: "1 while the function's autoscaler is in panic mode (scaling up for a burst)",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly instanceExits = new Counter({
    name: "funcd_instance_exits_total",
    help: "Instance exits that funcd did not ask for, by reason (crashed, OOMKilled, exited)",
    labelNames: ["function", "reason"] as const,
    registers: [this.registry],
  });

  // ── warm pool (src/scaler/pool.ts) ─────────────────────────────────────────
  readonly poolInstances = new Gauge({
    name: "funcd_pool_instances",
    help: "Generic (not yet specialized) warm pool instances by runtime and state (starting, ready)",
    labelNames: ["runtime", "state"] as const,
    registers: [this.registry],
  });
  readonly poolTakes = new Counter({
    name: "funcd_pool_takes_total",
    help: "Instance starts by runtime and how the warm pool served them: specialized (from the pool), empty (no ready pool instance), mismatch (memory limit differs from the pool's), fallback (specialization failed for a pool reason; started normally)",
    labelNames: ["runtime", "outcome"] as const,
    registers: [this.registry],
  });

  // ── store lock contention (src/store/sqlite/write-transaction.ts, the queue's retries) ─────────
  readonly storeLockWait = new Histogram({
    name: "funcd_store_lock_wait_seconds",
    help: "Time each store write transaction waited for SQLite's write lock (another connection was committing), by operation",
    labelNames: ["operation"] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly storeBusyRetries = new Counter({
    name: "funcd_store_busy_retries_total",
    help: "Store operations tried again because the database stayed locked past busy_timeout (SQLITE_BUSY), by operation",
    labelNames: ["operation"] as const,
    registers: [this.registry],
  });
  readonly storeBusyFailures = new Counter({
    name: "funcd_store_busy_failures_total",
    help: "Store operations given up after their retries because the database stayed locked, by operation",
    labelNames: ["operation"] as const,
    registers: [this.registry],
  });

  /** For the store's `onLockWait`: milliseconds waited by one write transaction. */
  readonly observeLockWait = (operation: string, waitedMs: number): void => {
    this.storeLockWait.observe({ operation }, waitedMs / 1000);
  };

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "funcd_daemon_" });
  }
}
