import { describe, expect, it } from "vitest";
import { timeOrderedId } from "./ids.js";

describe("timeOrderedId", () => {
  it("is a version 7 UUID carrying the time in its first 48 bits", () => {
    const id = timeOrderedId(0x0190_1234_5678);
    expect(id).toMatch(/^01901234-5678-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("sorts by creation time", () => {
    const ids = [
      timeOrderedId(1_700_000_000_000),
      timeOrderedId(1_700_000_000_001),
      timeOrderedId(1_800_000_000_000),
    ];
    expect([...ids].sort()).toEqual(ids);
  });

  it("differs between two ids made in the same millisecond", () => {
    expect(timeOrderedId(5)).not.toBe(timeOrderedId(5));
  });
});
