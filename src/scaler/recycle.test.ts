import { describe, expect, it } from "vitest";
import { FunctionSpecSchema } from "../deploy/spec.js";
import type { InstanceSpec } from "../drivers/driver.js";
import { FuncdError } from "../shared/errors.js";
import { ScriptedDriver, testFleet } from "./testing.js";

const settle = () => new Promise((r) => setImmediate(r));

function setup(values: Map<string, string>, min = 1) {
  const driver = new ScriptedDriver();
  const { fleet } = testFleet(driver, {
    secrets: (names) =>
      Object.fromEntries(
        names.map((name) => {
          const value = values.get(name);
          if (value === undefined) throw new FuncdError("SECRET_NOT_FOUND", `No secret "${name}"`);
          return [name, Buffer.from(value)];
        }),
      ),
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
    driver.autoReady = false;
    values.set("db-password", "two");
    fleet.recycle("fn");
    await settle();
    expect(driver.started).toHaveLength(2);
    values.set("db-password", "three");
    fleet.recycle("fn");
    driver.autoReady = true;
    driver.finishStarts();
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
