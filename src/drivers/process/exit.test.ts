import { describe, expect, it } from "vitest";
import type { InstanceExit } from "../driver.js";
import { describeExit, exitReason, startFailure } from "./exit.js";

const exit = (code: number | null, lastLogLines: string[], signal: string | null = null): InstanceExit => ({
  reason: "start-failed",
  code,
  signal,
  lastLogLines,
});
const failed = {
  functionName: "sum",
  handler: "handler.main",
  memoryMb: 64,
  sandboxed: true,
  readyTimeoutMs: 500,
};

describe("exitReason", () => {
  it.each([
    [0, null, false, "exited"],
    [1, null, false, "crashed"],
    [null, "SIGKILL", true, "OOMKilled"],
    [137, null, true, "OOMKilled"],
    [0, null, true, "exited"],
  ] as const)("code %s signal %s oom %s → %s", (code, signal, oom, reason) => {
    expect(exitReason(code, signal, oom)).toBe(reason);
  });
});

describe("startFailure", () => {
  it("reports exit code 3 as HANDLER_LOAD_FAILED with the output", () => {
    const err = startFailure({
      ...failed,
      oomKilled: false,
      why: "exited",
      exit: exit(3, ["SyntaxError at /function/handler.js:2"]),
    });
    expect(err.code).toBe("HANDLER_LOAD_FAILED");
    expect(err.message).toContain("/function/handler.js:2");
    expect(err.extra.logs).toEqual(["SyntaxError at /function/handler.js:2"]);
  });

  it("reports a sandbox set-up failure as SANDBOX_UNAVAILABLE", () => {
    const err = startFailure({
      ...failed,
      oomKilled: false,
      why: "exited",
      exit: exit(1, ["bwrap: Can't find source path"]),
    });
    expect(err.code).toBe("SANDBOX_UNAVAILABLE");
  });

  it("reports a timeout as FUNCTION_UNAVAILABLE", () => {
    const err = startFailure({
      ...failed,
      oomKilled: false,
      why: "timeout",
      exit: exit(null, [], "SIGKILL"),
    });
    expect(err.code).toBe("FUNCTION_UNAVAILABLE");
    expect(err.message).toContain("500 ms");
  });

  it("reports other exits as FUNCTION_CRASHED, naming a memory kill", () => {
    expect(
      startFailure({ ...failed, oomKilled: true, why: "exited", exit: exit(137, []) }).message,
    ).toContain("memory limit of 64 MiB");
    const crash = startFailure({ ...failed, oomKilled: false, why: "exited", exit: exit(1, ["oops"]) });
    expect(crash.code).toBe("FUNCTION_CRASHED");
    expect(crash.message).toContain("code 1");
  });
});

describe("describeExit", () => {
  it("translates bwrap's 128+N codes", () => {
    expect(describeExit(137, null, true)).toBe("code 137, i.e. killed by signal 9");
    expect(describeExit(137, null, false)).toBe("code 137");
    expect(describeExit(null, "SIGTERM", false)).toBe("signal SIGTERM");
  });
});
