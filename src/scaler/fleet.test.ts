import { describe, expect, it } from "vitest";
import { FunctionSpecSchema } from "../deploy/spec.js";
import type { InstanceInfo } from "../drivers/driver.js";
import { isFuncdError } from "../shared/errors.js";
import { ManualClock } from "../shared/manual-clock.js";
import type { Fleet, Lease } from "./fleet.js";
import { ScriptedDriver, testFleet } from "./testing.js";

/** An instance a previous daemon run left running, as a driver lists it after reconcile(). */
function adoptedInfo(instanceId: string, functionName: string, revisionId: string): InstanceInfo {
  return {
    instanceId,
    functionName,
    revisionId,
    address: { host: "127.0.0.1", port: 1 },
    state: "ready",
    startedAt: 0,
    adopted: true,
  };
}

function setup(
  scale: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  adopted: InstanceInfo[] = [],
) {
  const clock = new ManualClock();
  const driver = new ScriptedDriver();
  driver.adopted = adopted;
  const { fleet } = testFleet(driver, { clock, maxQueuedPerFunction: 3 });
  const spec = FunctionSpecSchema.parse({ name: "fn", concurrency: 2, scale, ...extra });
  fleet.activate("fn", spec, { id: "rev1", number: 1, artifactDir: "/x" });
  return { clock, driver, fleet, spec };
}

/** Lets promise callbacks (instance starts, waiters) run. */
const settle = () => new Promise((r) => setImmediate(r));

async function lease(fleet: Fleet): Promise<Lease> {
  return await fleet.acquire("fn");
}

describe("fleet", () => {
  it("sends each request to the ready instance with the fewest requests in flight", async () => {
    const { fleet } = setup({ min: 2 });
    await settle();
    const a = await lease(fleet);
    const b = await lease(fleet);
    expect(a.instance.id).not.toBe(b.instance.id);
    b.release();
    const c = await lease(fleet);
    expect(c.instance.id).toBe(b.instance.id);
  });

  it("never gives an instance more requests than its concurrency; the next waits for a release", async () => {
    const { fleet } = setup({ max: 1 });
    const first = await lease(fleet);
    const second = await lease(fleet);
    expect(second.instance.id).toBe(first.instance.id);
    expect(first.instance.inFlight).toBe(2);
    let third: Lease | undefined;
    void lease(fleet).then((l) => {
      third = l;
    });
    await settle();
    expect(third).toBeUndefined();
    first.release();
    await settle();
    expect(third?.instance.id).toBe(first.instance.id);
    expect(first.instance.inFlight).toBe(2);
  });

  it("refuses with 429 when the queue is full and 503 when the wait runs out, both with Retry-After", async () => {
    const { fleet, clock, driver } = setup({ max: 1 });
    driver.autoReady = false;
    const waiting = [lease(fleet), lease(fleet), lease(fleet)].map((p) => p.catch((e: unknown) => e));
    let full: unknown;
    try {
      await lease(fleet);
    } catch (err) {
      full = err;
    }
    expect(isFuncdError(full, "QUEUE_FULL")).toBe(true);
    expect((full as { retryAfter: number }).retryAfter).toBeGreaterThan(0);
    clock.advance(5001);
    const errors = await Promise.all(waiting);
    expect(errors.every((e) => isFuncdError(e, "FUNCTION_UNAVAILABLE"))).toBe(true);
  });

  it("starts several instances at once for a burst at zero, up to max", async () => {
    const { fleet, driver } = setup({ max: 3 }, { concurrency: 1 });
    driver.autoReady = false;
    const burst = Array.from({ length: 3 }, () => lease(fleet));
    expect(driver.started).toHaveLength(3);
    driver.finishStarts();
    const leases = await Promise.all(burst);
    expect(new Set(leases.map((l) => l.instance.id)).size).toBe(3);
  });

  it("never sends a request to an instance of a revision that is draining", async () => {
    const { fleet, spec } = setup();
    const old = await lease(fleet);
    fleet.activate("fn", spec, { id: "rev2", number: 2, artifactDir: "/y" });
    const next = await lease(fleet);
    expect(next.instance.revisionId).toBe("rev2");
    expect(old.instance.state).toBe("draining");
  });

  it("scales up under sustained load and back to zero after the idle timeout", async () => {
    const { fleet, clock, driver } = setup(
      { max: 10, idleTimeout: "30s", stableWindow: "10s", panicWindow: "2s" },
      { concurrency: 2 },
    );
    // Hold 6 requests in flight for 10 s: 6 / (2 × 0.7) → 5 instances.
    const held: Lease[] = [];
    for (let i = 0; i < 6; i++) {
      const l = fleet.acquire("fn");
      held.push(l instanceof Promise ? await l : l);
      await settle();
    }
    for (let s = 0; s < 10; s++) {
      clock.advance(1000);
      await settle();
    }
    expect(fleet.status("fn")?.desired).toBe(5);
    expect(driver.started.length).toBeGreaterThanOrEqual(5);
    for (const l of held) l.release();
    for (let s = 0; s < 40; s++) {
      clock.advance(1000);
      await settle();
    }
    expect(fleet.status("fn")?.desired).toBe(0);
    expect(fleet.status("fn")?.instances).toHaveLength(0);
  });

  it("a function deleted while its instances start starts no more (the aborted starts are not crashes)", async () => {
    const clock = new ManualClock();
    const driver = new ScriptedDriver();
    driver.autoReady = false;
    const { fleet } = testFleet(driver, { clock });
    const spec = FunctionSpecSchema.parse({ name: "fn", scale: { min: 2 } });
    fleet.activate("fn", spec, { id: "rev1", number: 1, artifactDir: "/x" });
    await settle();
    expect(driver.started).toHaveLength(2);
    await fleet.remove("fn");
    for (let i = 0; i < 5; i++) {
      clock.advance(2_000);
      await settle();
    }
    expect(driver.started).toHaveLength(2);
    expect(fleet.status("fn")).toBeUndefined();
  });

  it("keeps min instances even when idle", async () => {
    const { fleet, clock } = setup({ min: 2, idleTimeout: "1s" });
    await settle();
    clock.advance(10_000);
    await settle();
    expect(fleet.status("fn")?.instances.filter((i) => i.state !== "draining")).toHaveLength(2);
  });

  it("takes the driver's adopted instances of the revision it activates instead of starting new ones", async () => {
    const { fleet, driver, clock } = setup({ min: 0 }, {}, [
      adoptedInfo("fn-old-1", "fn", "rev1"),
      adoptedInfo("fn-stale-1", "fn", "rev0"),
      adoptedInfo("gone-1", "gone", "rev9"),
    ]);
    await settle();
    // The adopted instance serves: nothing new started.
    expect(driver.started).toHaveLength(0);
    expect(fleet.status("fn")?.instances).toEqual([
      expect.objectContaining({ instanceId: "fn-old-1", revisionId: "rev1", state: "ready" }),
    ]);
    // It is kept until a whole idle timeout has passed from its adoption (default 5 min), not reaped at once.
    clock.advance(60_000);
    await settle();
    expect(fleet.status("fn")?.instances.map((i) => i.instanceId)).toEqual(["fn-old-1"]);
    const l = await lease(fleet);
    expect(l.instance.id).toBe("fn-old-1");
    l.release();
    // After the restore: what no active revision claimed is stopped.
    expect(await fleet.stopUnclaimedAdopted()).toBe(2);
    expect(driver.stopped.sort()).toEqual(["fn-stale-1", "gone-1"]);
    expect(await fleet.stopUnclaimedAdopted()).toBe(0);
  });
});
