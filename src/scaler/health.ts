import { messageOf } from "../shared/errors.js";
import type { FleetHost, Unit } from "./unit.js";

/**
 * Asks every idle ready instance for `/healthz`. One that does not answer 200
 * within two seconds is stopped and counted like a crash, so a hung instance
 * is replaced before a request finds it. Busy instances are left alone: the
 * gateway's own timeout watches them.
 */
export async function checkHealth(
  host: Pick<FleetHost, "clock" | "logger" | "systemLog" | "isTracked" | "stop" | "recordCrash">,
  units: Iterable<Unit>,
): Promise<void> {
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
          .catch((err: unknown) => {
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
