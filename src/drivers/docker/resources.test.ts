import { describe, expect, it } from "vitest";
import {
  DEFAULT_MEMORY_MB,
  nanoCpus,
  PROFILE_NAMES,
  parseCpu,
  RESOURCE_PROFILES,
  resolveResources,
} from "./resources.js";

describe("resource profiles", () => {
  it("are Kyma Serverless's function presets (limits)", () => {
    expect(RESOURCE_PROFILES).toEqual({
      XS: { memoryMb: 256, cpus: 0.15 },
      S: { memoryMb: 256, cpus: 0.2 },
      M: { memoryMb: 512, cpus: 0.4 },
      L: { memoryMb: 1024, cpus: 0.8 },
      XL: { memoryMb: 2048, cpus: 1.6 },
    });
    expect(PROFILE_NAMES).toEqual(["XS", "S", "M", "L", "XL"]);
  });

  it.each([
    [{}, { memoryMb: DEFAULT_MEMORY_MB }],
    [{ profile: "M" }, { memoryMb: 512, cpus: 0.4 }],
    [{ profile: "XS" }, { memoryMb: 256, cpus: 0.15 }],
    [
      { profile: "L", memory: 300 },
      { memoryMb: 300, cpus: 0.8 },
    ],
    [
      { profile: "L", cpu: 2 },
      { memoryMb: 1024, cpus: 2 },
    ],
    [
      { profile: "XL", cpu: "250m", memory: 64 },
      { memoryMb: 64, cpus: 0.25 },
    ],
    [{ memory: 128 }, { memoryMb: 128 }],
    [{ cpu: "1.5" }, { memoryMb: DEFAULT_MEMORY_MB, cpus: 1.5 }],
  ])("resolveResources(%j) = %j (explicit values win over the profile)", (input, expected) => {
    expect(resolveResources(input)).toEqual(expected);
  });

  it("rejects unknown profiles and impossible values, naming them", () => {
    expect(() => resolveResources({ profile: "XXL" })).toThrow(
      /"XXL" does not exist: use one of XS, S, M, L, XL/,
    );
    expect(() => resolveResources({ profile: "m" })).toThrow(/"m"/);
    expect(() => resolveResources({ memory: 2 })).toThrow(/Memory limit 2/);
    expect(() => resolveResources({ memory: 1.5 })).toThrow(/Memory limit 1.5/);
    expect(() => resolveResources({ cpu: 0 })).toThrow(/CPU limit 0/);
    expect(() => resolveResources({ cpu: "lots" })).toThrow(/CPU limit "lots"/);
  });

  it("parses cores and millicores, and converts to Docker's NanoCpus", () => {
    expect(parseCpu("500m")).toBe(0.5);
    expect(parseCpu("2")).toBe(2);
    expect(parseCpu(0.15)).toBe(0.15);
    expect(nanoCpus(0.15)).toBe(150_000_000);
    expect(nanoCpus(1.6)).toBe(1_600_000_000);
  });
});
