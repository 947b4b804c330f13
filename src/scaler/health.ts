import { messageOf } from "../shared/errors.js";
import type { FleetHost, Unit } from "./unit.js";

/**
 * How long a check that found nobody answering waits for the driver's exit report: an instance that
 * just died refuses connections at once, but its driver knows how it ended a little later (the Docker
 * engine reports a container's exit ~150 ms after its process died).
 */
const EXIT_REPORT_WAIT_MS = 1_000;

type HealthHost = Pick<
  FleetHost,
  "clock" | "logger" | "driver" | "systemLog" | "isTracked" | "stop" | "recordCrash"
>;

/**
 * Asks every idle ready instance for `/healthz`. One that does not answer 200
 * within two seconds is stopped and counted like a crash, so a hung instance
 * is replaced before a request finds it. Busy instances are left alone: the
 * gateway's own timeout watches them. One that died meanwhile is the driver's
 * to report (crashed, OOMKilled), not "unhealthy": a refused or dropped
 * connection first waits a moment for that report.
 */
export async function checkHealth(host: HealthHost, units: Iterable<Unit>): Promise<void> {
  const checks: Promise<void>[] = [];
  for (const unit of units) {
    for (const instance of unit.instances.values()) {
      if (instance.state !== "ready" || instance.inFlight > 0 || !instance.upstream) continue;
      const upstream = instance.upstream;
      checks.push(
        upstream
          .request({ method: "GET", path: "/healthz", headersTimeout: 2000, bodyTimeout: 2000 })
          .then(async (res) => {
            await res.body.dump();
            if (res.statusCode !== 200) throw new Error(`/healthz answered ${res.statusCode}`);
          })
          .catch(async (err: unknown) => {
            if (noAnswer(err)) await exitReport(host, instance.id, EXIT_REPORT_WAIT_MS);
            // Gone meanwhile: stopped, or its exit was reported and handled.
            if (instance.state !== "ready" || !host.isTracked(instance.id)) return;
            const text = `health check failed (${messageOf(err)}), replacing the instance`;
            host.systemLog(unit.name, instance.revisionId, instance.id, text);
            host.logger.warn({ function: unit.name, instance: instance.id }, text);
            void host.stop(instance, 0);
            host.recordCrash(unit, {
              instanceId: instance.id,
              at: host.clock.now(),
              reason: "unhealthy",
              code: null,
              signal: null,
              lastLogLines: [],
            });
          }),
      );
    }
  }
  await Promise.all(checks);
}

/** A check that got no answer at all (refused, reset, closed) — not a timeout, not a bad status. */
function noAnswer(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && !code.endsWith("_TIMEOUT");
}

/** Resolves once the driver reports `instanceId`'s exit (the fleet has handled it by then), or after `ms`. */
function exitReport(
  host: Pick<HealthHost, "clock" | "driver">,
  instanceId: string,
  ms: number,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      timer.cancel();
      unsubscribe();
      resolve();
    };
    // Subscribed after the fleet's own listener, so the fleet has seen the exit when this one runs.
    const unsubscribe = host.driver.onEvent((event) => {
      if (event.type === "exit" && event.instanceId === instanceId) done();
    });
    const timer = host.clock.setTimeout(done, ms);
  });
}
