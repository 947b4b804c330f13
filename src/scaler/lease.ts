import { type FleetHost, type Lease, type LiveInstance, measure, type Unit } from "./unit.js";

/**
 * Lends `instance` to one request. Releasing it settles the instance by the
 * request's outcome (kill, broken connection, recycle, finish draining) and
 * hands the freed slot to a waiting request.
 */
export function lease(
  host: Pick<FleetHost, "clock" | "systemLog" | "isTracked" | "stop" | "drain" | "dispatch">,
  unit: Unit,
  instance: LiveInstance,
  coldStart: boolean,
): Lease {
  instance.inFlight++;
  instance.served++;
  instance.lastUsedAt = host.clock.now();
  unit.inFlight++;
  measure(unit, host.clock.now());
  let released = false;
  return {
    instance,
    coldStart,
    release: (outcome = {}) => {
      if (released) return;
      released = true;
      instance.inFlight--;
      instance.lastUsedAt = host.clock.now();
      unit.inFlight--;
      measure(unit, host.clock.now());
      if (outcome.kill) {
        host.systemLog(
          unit.name,
          instance.revisionId,
          instance.id,
          "instance did not answer in time, killing it",
        );
        void host.stop(instance, 0);
      } else if (outcome.broken && instance.state !== "draining") {
        // Its process is most likely gone and the driver's exit event (with the real reason: crashed,
        // OOMKilled) is on its way. Stop routing to it now; stop it ourselves only if no exit comes.
        instance.state = "draining";
        host.clock.setTimeout(() => {
          if (host.isTracked(instance.id)) void host.stop(instance, 0);
        }, 2000);
      } else if (outcome.recycle && instance.state === "ready") {
        host.systemLog(
          unit.name,
          instance.revisionId,
          instance.id,
          "handler timed out, recycling the instance",
        );
        host.drain(instance);
      } else if (instance.state === "draining" && instance.inFlight === 0) {
        void host.stop(instance, 5000);
      } else if (instance.state === "ready") {
        // A request went through: whatever crashed before is behind us.
        if (unit.consecutiveCrashes > 0 && !outcome.recycle) unit.consecutiveCrashes = 0;
      }
      host.dispatch(unit);
    },
  };
}
