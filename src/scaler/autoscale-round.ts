import { defaultConcurrency } from "../deploy/spec.js";
import { DEFAULT_AUTOSCALE, decide } from "./autoscaler.js";
import { type FleetHost, serving, type Unit } from "./unit.js";

/**
 * One autoscaler round for one function: sample the concurrency it saw,
 * decide how many instances it wants (see autoscaler.ts), start the missing
 * ones and stop idle extras — gradually, half the excess per round at most,
 * and only instances with nothing in flight. The last instance goes only
 * after `idleTimeout` without a request (scale to zero); `min` always stays.
 */
export function autoscaleRound(
  host: Pick<FleetHost, "logger" | "metrics" | "systemLog" | "launch" | "drain">,
  unit: Unit,
  now: number,
): void {
  unit.meter.sample(now);
  if (!unit.revision) return;
  const current = serving(unit);
  const scale = unit.spec.scale;
  const decision = decide(
    unit.meter.samples,
    now,
    current.length,
    {
      concurrency: defaultConcurrency(unit.spec),
      targetUtilization: scale.targetUtilization ?? DEFAULT_AUTOSCALE.targetUtilization,
      min: scale.min,
      max: scale.max,
      stableWindowMs: scale.stableWindow ?? DEFAULT_AUTOSCALE.stableWindowMs,
      panicWindowMs: scale.panicWindow ?? DEFAULT_AUTOSCALE.panicWindowMs,
      panicThreshold: DEFAULT_AUTOSCALE.panicThreshold,
    },
    unit.scaleState,
  );
  unit.scaleState = decision.state;
  const busy = unit.inFlight > 0 || unit.waiters.length > 0;
  const recentlyUsed = busy || now - unit.lastRequestAt < scale.idleTimeout;
  // Past idleTimeout without a request the window's leftovers no longer matter: go down to min.
  const desired = recentlyUsed ? Math.min(scale.max, Math.max(decision.desired, scale.min, 1)) : scale.min;
  if (desired !== unit.desired || decision.panic !== unit.panic) {
    host.logger.info(
      {
        function: unit.name,
        desired,
        current: current.length,
        panic: decision.panic,
        stableConcurrency: Number(decision.stableConcurrency.toFixed(2)),
        panicConcurrency: Number(decision.panicConcurrency.toFixed(2)),
      },
      "autoscaler decision",
    );
  }
  unit.desired = desired;
  unit.panic = decision.panic;
  host.metrics.desiredInstances.set({ function: unit.name }, desired);
  host.metrics.panicMode.set({ function: unit.name }, decision.panic ? 1 : 0);
  host.metrics.queueDepth.set({ function: unit.name }, unit.waiters.length);

  if (current.length < desired && now >= unit.backoffUntil) {
    for (let n = current.length; n < desired; n++) host.launch(unit, unit.revision, false);
  } else if (current.length > desired) {
    const idle = current
      .filter((i) => i.state === "ready" && i.inFlight === 0)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    const excess = current.length - desired;
    for (const instance of idle.slice(0, Math.ceil(excess / 2))) {
      host.systemLog(
        unit.name,
        instance.revisionId,
        instance.id,
        "instance not needed, stopping (scale down)",
      );
      host.drain(instance);
    }
  }
}
