import { describe, expect, it } from "vitest";
import type { InstanceSpec } from "../driver.js";
import { buildLaunch } from "./launch.js";
import { InstanceCgroup } from "./memory.js";
import { instancePaths } from "./rundir.js";
import { DEFAULT_UID_BASE, PoolUids, poolUidRange, uidFor } from "./sandbox.js";
import type { RuntimeTemplate } from "./template.js";

const spec: InstanceSpec = {
  instanceId: "sum-1",
  functionName: "sum",
  revisionId: "r1",
  runtime: "nodejs20",
  artifactDir: "/data/artifacts/r1",
  handler: "handler.main",
  env: { GREETING: "hi", PATH: "/custom/bin" },
  memoryMb: 128,
  timeoutMs: 3000,
};
const template: RuntimeTemplate = {
  runtime: "nodejs20",
  dir: "/opt/funcd/templates/nodejs20",
  program: { interpreter: { name: "node", path: "/usr/bin/node" } },
  args: [{ templateFile: "server.mjs" }],
  generic: true,
  bootEnv: ["NODE_OPTIONS"],
};
const paths = instancePaths("/data/run", "sum-1");

describe("buildLaunch", () => {
  it("layers cgroup entry, privilege drop, sandbox and runtime, in that order", () => {
    const cgroup = InstanceCgroup.open(1, "/sys/fs/cgroup/memory/funcd/abc/sum-1");
    const { argv, cwd } = buildLaunch({
      spec,
      template,
      sandbox: { kind: "bwrap", bwrap: "/usr/bin/bwrap", setpriv: "/usr/bin/setpriv" },
      paths,
      uid: 200_123,
      cgroup,
    });
    const at = (item: string) => argv.indexOf(item);
    expect(argv[0]).toBe("/bin/sh");
    expect(argv).toContain("/sys/fs/cgroup/memory/funcd/abc/sum-1");
    expect(at("/usr/bin/setpriv")).toBeLessThan(at("/usr/bin/bwrap"));
    expect(argv).toContain("--reuid=200123");
    expect(argv.slice(-3)).toEqual(["/usr/bin/node", "--max-old-space-size=96", "/runtime/server.mjs"]);
    // Only the function's own folders are mounted, at fixed places.
    expect(argv[at("/data/artifacts/r1") + 1]).toBe("/function");
    expect(argv[at(paths.socketDir) + 1]).toBe("/run/funcd");
    expect(argv[at("/opt/funcd/templates/nodejs20") + 1]).toBe("/runtime");
    expect(argv).not.toContain("/data/run");
    expect(argv.filter((a) => a === "/etc")).toEqual([]);
    expect(cwd).toBe("/");
  });

  it("builds the environment from the function's env and the contract only", () => {
    const { env } = buildLaunch({
      spec,
      template,
      sandbox: { kind: "bwrap", bwrap: "bwrap" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    expect(env).toEqual({
      PATH: "/custom/bin",
      HOME: "/tmp",
      NODE_ENV: "production",
      GREETING: "hi",
      FUNCD_LISTEN: "/run/funcd/sock",
      FUNCD_FUNCTION_DIR: "/function",
      FUNCD_HANDLER: "handler.main",
      FUNCD_FUNCTION_NAME: "sum",
      FUNCD_REVISION: "r1",
      FUNCD_RUNTIME: "nodejs20",
      FUNCD_TIMEOUT_MS: "3000",
      FUNCD_MEMORY_LIMIT_MB: "128",
    });
  });

  it("without the sandbox, points the runtime at host paths", () => {
    const { argv, env, cwd } = buildLaunch({
      spec,
      template,
      sandbox: { kind: "none" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    expect(argv).toEqual([
      "/usr/bin/node",
      "--max-old-space-size=96",
      "/opt/funcd/templates/nodejs20/server.mjs",
    ]);
    expect(env.FUNCD_LISTEN).toBe(paths.socketPath);
    expect(env.FUNCD_FUNCTION_DIR).toBe("/data/artifacts/r1");
    expect(cwd).toBe("/data/artifacts/r1");
  });
});

describe("buildLaunch for a generic (warm pool) instance", () => {
  it("mounts the slot dir as the function dir and gives the runtime no function env", () => {
    const generic = instancePaths("/data/run", "pool-nodejs20-1");
    const { argv, env } = buildLaunch({
      spec: { ...spec, instanceId: "pool-nodejs20-1", artifactDir: generic.slotDir },
      template,
      sandbox: { kind: "bwrap", bwrap: "/usr/bin/bwrap" },
      paths: generic,
      uid: undefined,
      cgroup: undefined,
      generic: true,
    });
    expect(argv[argv.indexOf(generic.slotDir) + 1]).toBe("/function");
    expect(argv.slice(-2)).toEqual(["--max-old-space-size=96", "/runtime/server.mjs"]);
    expect(env).toEqual({
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: "/tmp",
      NODE_ENV: "production",
      FUNCD_GENERIC: "1",
      FUNCD_LISTEN: "/run/funcd/sock",
      FUNCD_FUNCTION_DIR: "/function",
      FUNCD_RUNTIME: "nodejs20",
      FUNCD_MEMORY_LIMIT_MB: "128",
    });
  });
});

describe("poolUidRange", () => {
  it("follows the per-function range, so no pool uid is ever a function's uid", () => {
    const { first, size } = poolUidRange();
    expect(first).toBe(DEFAULT_UID_BASE + 50_000);
    expect(size).toBeGreaterThan(0);
    for (const name of ["sum", "product", "a", "zzzzzzzz"]) expect(uidFor(name)).toBeLessThan(first);
  });

  it("hands each live pool instance its own uid, and a released one only after the rest", () => {
    const uids = new PoolUids();
    const { first, size } = poolUidRange();
    const taken = Array.from({ length: 50 }, () => uids.take());
    expect(new Set(taken).size).toBe(50);
    expect(taken.every((uid) => uid >= first && uid < first + size)).toBe(true);
    for (const uid of taken) uids.release(uid);
    const small = new PoolUids(300_000);
    const all = Array.from({ length: size }, () => small.take());
    expect(new Set(all).size).toBe(size);
    expect(() => small.take()).toThrow(/in use/);
    small.release(all[7]);
    expect(small.take()).toBe(all[7]);
    // Round the range: a released uid comes back only after the others.
    const round = new PoolUids();
    const a = round.take();
    round.release(a);
    expect(round.take()).not.toBe(a);
  });
});

describe("uidFor", () => {
  it("is stable, in range, and differs between functions", () => {
    expect(uidFor("sum")).toBe(uidFor("sum"));
    expect(uidFor("sum")).toBeGreaterThanOrEqual(DEFAULT_UID_BASE);
    expect(uidFor("sum")).toBeLessThan(DEFAULT_UID_BASE + 50_000);
    expect(uidFor("sum")).not.toBe(uidFor("product"));
    expect(uidFor("sum", 300_000) - 300_000).toBe(uidFor("sum") - DEFAULT_UID_BASE);
  });
});
