import { pino } from "pino";
import type { Pool } from "undici";
import { describe, expect, it } from "vitest";
import { FunctionSpecSchema } from "../deploy/spec.js";
import type { Driver, DriverEvent, InstanceInfo, InstanceSpec } from "../drivers/driver.js";
import { DaemonMetrics } from "../observability/metrics.js";
import { FuncdError } from "../shared/errors.js";
import { ManualClock } from "../shared/manual-clock.js";
import { Fleet } from "./fleet.js";

/** An in-memory driver whose starts finish when the test says so (`hold`). */
class HeldDriver implements Driver {
  readonly name = "held";
  readonly started: InstanceSpec[] = [];
  readonly stopped: string[] = [];
  hold = false;
  readonly #pending: (() => void)[] = [];

  start(spec: InstanceSpec): Promise<InstanceInfo> {
    this.started.push(spec);
    const info: InstanceInfo = {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      address: { socketPath: `/fake/${spec.instanceId}` },
      state: "ready",
      startedAt: 0,
    };
    if (!this.hold) return Promise.resolve(info);
    return new Promise((resolve) => this.#pending.push(() => resolve(info)));
  }
  release(): void {
    for (const done of this.#pending.splice(0)) done();
  }
  async stop(id: string): Promise<void> {
    this.stopped.push(id);
  }
  list(): InstanceInfo[] {
    return [];
  }
  onEvent(_listener: (e: DriverEvent) => void): () => void {
    return () => {};
  }
  async reconcile() {
    return { removed: 0 };
  }
  async dispose(): Promise<void> {}
}

const fakePool = () => ({ close: async () => {}, destroy: async () => {} }) as unknown as Pool;
const settle = () => new Promise((r) => setImmediate(r));

function setup(values: Map<string, string>, min = 1) {
  const driver = new HeldDriver();
  const fleet = new Fleet({
    driver,
    clock: new ManualClock(),
    logger: pino({ level: "silent" }),
    metrics: new DaemonMetrics(),
    connect: fakePool,
    systemLog: () => {},
    secrets: (names) =>
      Object.fromEntries(
        names.map((name) => {
          const value = values.get(name);
          if (value === undefined) throw new FuncdError("SECRET_NOT_FOUND", `No secret "${name}"`);
          return [name, Buffer.from(value)];
        }),
      ),
    coldStartWaitMs: 5000,
    healthEveryMs: 0,
  });
  const spec = FunctionSpecSchema.parse({ name: "fn", secrets: ["db-password"], scale: { min } });
  fleet.activate("fn", spec, { id: "rev1", number: 1, artifactDir: "/x" });
  return { driver, fleet };
}

const secretOf = (spec: InstanceSpec | undefined) => spec?.secrets?.["db-password"]?.toString();

describe("secrets in the fleet", () => {
  it("reads the values at each start and hands them to the driver", async () => {
    const { driver } = setup(new Map([["db-password", "one"]]));
    await settle();
    expect(driver.started).toHaveLength(1);
    expect(secretOf(driver.started[0])).toBe("one");
  });

  it("recycle() drains the ready instances and starts new ones that read the new value", async () => {
    const values = new Map([["db-password", "one"]]);
    const { driver, fleet } = setup(values);
    await settle();
    const first = driver.started[0]?.instanceId;
    values.set("db-password", "two");
    expect(fleet.recycle("fn")).toBe(1);
    await settle();
    expect(driver.stopped).toEqual([first]);
    expect(driver.started).toHaveLength(2);
    expect(secretOf(driver.started[1])).toBe("two");
  });

  it("an instance still starting when the value changed is drained once ready and replaced", async () => {
    const values = new Map([["db-password", "one"]]);
    const { driver, fleet } = setup(values);
    await settle();
    // Replacements of the first recycle stay starting until released.
    driver.hold = true;
    values.set("db-password", "two");
    fleet.recycle("fn");
    await settle();
    expect(driver.started).toHaveLength(2);
    values.set("db-password", "three");
    fleet.recycle("fn");
    driver.hold = false;
    driver.release();
    await settle();
    await settle();
    // The start holding "two" became ready after the second recycle: drained, replaced with "three".
    expect(driver.stopped).toContain(driver.started[1]?.instanceId);
    expect(driver.started).toHaveLength(3);
    expect(secretOf(driver.started[2])).toBe("three");
    expect(fleet.status("fn")?.instances.filter((i) => i.state !== "draining")).toHaveLength(1);
  });

  it("a start whose secret is gone fails with SECRET_NOT_FOUND and starts nothing", async () => {
    const { driver, fleet } = setup(new Map());
    await settle();
    expect(driver.started).toHaveLength(0);
    expect(fleet.status("fn")?.lastExit?.reason).toBe("start-failed");
  });
});
