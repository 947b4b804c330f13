import { describe, expect, it } from "vitest";
import { SECRET_NAME, secretEnvName, secretEnv as secretEnvOf } from "./secret-names.js";

const bytes = (values: Record<string, string>) =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));
const secretEnv = (values: Record<string, string> | undefined, env: Record<string, string>) =>
  secretEnvOf(values === undefined ? undefined : bytes(values), env);

describe("secretEnvName", () => {
  it.each([
    ["db-password", "DB_PASSWORD"],
    ["api.key", "API_KEY"],
    ["Already_Upper", "ALREADY_UPPER"],
    ["x", "X"],
    ["1password", "_1PASSWORD"],
  ])("%s → %s", (name, env) => {
    expect(SECRET_NAME.test(name)).toBe(true);
    expect(secretEnvName(name)).toBe(env);
  });
});

describe("secretEnv", () => {
  it("adds one variable per secret", () => {
    expect(secretEnv({ "db-password": "p", token: "t" }, {})).toEqual({ DB_PASSWORD: "p", TOKEN: "t" });
  });

  it("leaves a variable the function's env sets to the function", () => {
    expect(secretEnv({ "db-password": "p" }, { DB_PASSWORD: "mine" })).toEqual({});
  });

  it("never replaces what funcd sets itself", () => {
    expect(secretEnv({ path: "x", "funcd-handler": "y", home: "z", node_env: "w" }, {})).toEqual({});
  });

  it("gives a value that is not text only as a file", () => {
    expect(secretEnvOf({ der: Buffer.from([0x30, 0x82, 0xff, 0x00]), nul: Buffer.from("a\0b") }, {})).toEqual(
      {},
    );
  });

  it("is empty without secrets", () => {
    expect(secretEnv(undefined, { A: "1" })).toEqual({});
  });
});
