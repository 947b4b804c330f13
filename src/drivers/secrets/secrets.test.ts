import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { containerConfig } from "../docker/container-config.js";
import type { Driver, DriverEvent, InstanceInfo, InstanceSpec } from "../driver.js";
import { buildLaunch } from "../process/launch.js";
import { instancePaths } from "../process/rundir.js";
import type { RuntimeTemplate } from "../process/template.js";
import { findSecretsBase, writeSecretFiles } from "./files.js";
import { SecretsDriver } from "./secrets-driver.js";

const spec: InstanceSpec = {
  instanceId: "api-1",
  functionName: "api",
  revisionId: "r1",
  runtime: "nodejs20",
  artifactDir: "/data/artifacts/r1",
  handler: "handler.main",
  env: { OWN: "x", TOKEN: "from-env" },
  memoryMb: 128,
  timeoutMs: 3000,
  secrets: { "db-password": Buffer.from("pw"), token: Buffer.from("from-secret") },
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "funcd-secret-files-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("secret files", () => {
  it("one 0400 file per secret in a 0500 folder, byte for byte", async () => {
    const folder = await writeSecretFiles(
      dir,
      "api-1",
      { a: Buffer.from([0, 1, 255]), b: Buffer.from("t") },
      undefined,
    );
    expect(readdirSync(folder).sort()).toEqual(["a", "b"]);
    expect(readFileSync(path.join(folder, "a"))).toEqual(Buffer.from([0, 1, 255]));
    expect(statSync(path.join(folder, "a")).mode & 0o777).toBe(0o400);
    expect(statSync(folder).mode & 0o777).toBe(0o500);
  });

  it("given to the instance's uid when the daemon is root", async () => {
    if (process.getuid?.() !== 0) return;
    const folder = await writeSecretFiles(
      dir,
      "api-1",
      { a: Buffer.from("v") },
      { uid: 200_123, gid: 200_123 },
    );
    expect(statSync(path.join(folder, "a")).uid).toBe(200_123);
    expect(statSync(folder).uid).toBe(200_123);
  });

  it("lands on a tmpfs, never on the disk", async () => {
    const base = await findSecretsBase("k", {}).catch(() => undefined);
    // No tmpfs on this machine at all: the function refuses, which is the point.
    if (base === undefined) return;
    expect(base).toMatch(/^\/(run|dev\/shm)\/funcd-secrets-k$/);
  });
});

describe("the process driver with secrets", () => {
  const template: RuntimeTemplate = {
    runtime: "nodejs20",
    dir: "/opt/funcd/templates/nodejs20",
    program: { interpreter: { name: "node", path: "/usr/bin/node" } },
    args: [{ templateFile: "server.mjs" }],
    generic: true,
    bootEnv: [],
  };
  const paths = instancePaths("/data/run", "api-1");
  const withDir = { ...spec, secretsDir: "/dev/shm/funcd-secrets-k/api-1" };

  it("binds the folder read-only at /var/secrets and says so in FUNCD_SECRETS_DIR", () => {
    const { argv, env } = buildLaunch({
      spec: withDir,
      template,
      sandbox: { kind: "bwrap", bwrap: "/usr/bin/bwrap" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    const at = argv.indexOf("/dev/shm/funcd-secrets-k/api-1");
    expect(argv.slice(at - 1, at + 2)).toEqual([
      "--ro-bind",
      "/dev/shm/funcd-secrets-k/api-1",
      "/var/secrets",
    ]);
    expect(env.FUNCD_SECRETS_DIR).toBe("/var/secrets");
  });

  it("without bwrap points FUNCD_SECRETS_DIR at the real folder", () => {
    const { env } = buildLaunch({
      spec: withDir,
      template,
      sandbox: { kind: "none" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    expect(env.FUNCD_SECRETS_DIR).toBe("/dev/shm/funcd-secrets-k/api-1");
  });

  it("adds a variable per secret, the function's env winning", () => {
    const { env } = buildLaunch({
      spec: withDir,
      template,
      sandbox: { kind: "bwrap", bwrap: "bwrap" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    expect(env.DB_PASSWORD).toBe("pw");
    expect(env.TOKEN).toBe("from-env");
  });

  it("mounts nothing and sets no FUNCD_SECRETS_DIR for a function without secrets", () => {
    const { secrets: _s, ...plain } = spec;
    const { argv, env } = buildLaunch({
      spec: plain,
      template,
      sandbox: { kind: "bwrap", bwrap: "bwrap" },
      paths,
      uid: undefined,
      cgroup: undefined,
    });
    expect(argv).not.toContain("/var/secrets");
    expect(env.FUNCD_SECRETS_DIR).toBeUndefined();
  });
});

describe("the docker driver with secrets", () => {
  const plan = {
    spec: { ...spec, secretsDir: "/dev/shm/funcd-secrets-k/api-1" },
    image: "funcd/api:abc",
    imageUser: "1000:1000",
    daemonId: "d1",
    networkName: "funcd",
    buildless: false,
  };

  it("binds the folder read-only at /var/secrets, the only host mount of an image-mode container", () => {
    const config = containerConfig(plan);
    expect(config.HostConfig?.Mounts).toEqual([
      { Type: "bind", Source: "/dev/shm/funcd-secrets-k/api-1", Target: "/var/secrets", ReadOnly: true },
    ]);
    expect(config.Env).toContain("FUNCD_SECRETS_DIR=/var/secrets");
    expect(config.Env).toContain("DB_PASSWORD=pw");
    expect(config.Env).toContain("TOKEN=from-env");
  });

  it("gives a generic (pool) container no secrets", () => {
    const config = containerConfig({ ...plan, generic: true });
    expect(config.HostConfig?.Mounts).toEqual([]);
    expect(config.Env?.some((e) => e.startsWith("DB_PASSWORD="))).toBe(false);
  });
});

/** Records what reaches the wrapped driver, and whether the folder existed then. */
class RecordingDriver implements Driver {
  readonly name = "fake";
  started: InstanceSpec[] = [];
  running = new Map<string, InstanceInfo>();
  listeners = new Set<(event: DriverEvent) => void>();
  fail = false;
  async start(s: InstanceSpec): Promise<InstanceInfo> {
    this.started.push(s);
    if (this.fail) throw new Error("boom");
    const info: InstanceInfo = {
      instanceId: s.instanceId,
      functionName: s.functionName,
      revisionId: s.revisionId,
      address: { socketPath: "/x" },
      state: "ready",
      startedAt: 0,
    };
    this.running.set(s.instanceId, info);
    return info;
  }
  async stop(id: string): Promise<void> {
    this.running.delete(id);
  }
  list(): InstanceInfo[] {
    return [...this.running.values()];
  }
  onEvent(listener: (event: DriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async reconcile() {
    return { removed: 0 };
  }
  async dispose() {}
  async startGeneric(_runtime: string, options: { poolId: string }) {
    return { poolId: options.poolId };
  }
  async specialize(_poolId: string, s: InstanceSpec): Promise<InstanceInfo> {
    return this.start(s);
  }
  exit(instanceId: string) {
    this.running.delete(instanceId);
    for (const l of this.listeners)
      l({
        type: "exit",
        instanceId,
        functionName: "api",
        exit: { reason: "crashed", code: 1, signal: null, lastLogLines: [] },
      });
  }
}

describe("SecretsDriver", () => {
  const logger = pino({ level: "silent" });
  const make = () => {
    const inner = new RecordingDriver();
    const driver = new SecretsDriver(inner, { key: "k", logger, baseDir: path.join(dir, "base") });
    return { inner, driver, folder: (id: string) => path.join(dir, "base", id) };
  };

  it("writes the folder before the start and removes it when the instance stops", async () => {
    const { inner, driver, folder } = make();
    await driver.start(spec);
    expect(inner.started[0]?.secretsDir).toBe(folder("api-1"));
    expect(readFileSync(path.join(folder("api-1"), "db-password"), "utf8")).toBe("pw");
    await driver.stop("api-1");
    expect(() => statSync(folder("api-1"))).toThrow();
  });

  it("removes the folder when the start fails and when the instance exits by itself", async () => {
    const { inner, driver, folder } = make();
    inner.fail = true;
    await expect(driver.start(spec)).rejects.toThrow("boom");
    expect(() => statSync(folder("api-1"))).toThrow();
    inner.fail = false;
    await driver.start({ ...spec, instanceId: "api-2" });
    inner.exit("api-2");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(() => statSync(folder("api-2"))).toThrow();
  });

  it("reconcile removes folders of instances the driver does not run", async () => {
    const { driver, folder } = make();
    await driver.start(spec);
    await writeSecretFiles(path.join(dir, "base"), "left-over", { a: Buffer.from("v") }, undefined);
    await driver.reconcile();
    expect(readdirSync(path.join(dir, "base"))).toEqual(["api-1"]);
    expect(statSync(folder("api-1")).isDirectory()).toBe(true);
    await driver.dispose();
    expect(() => statSync(path.join(dir, "base"))).toThrow();
  });

  it("passes functions without secrets through untouched, and refuses to specialize ones with secrets", async () => {
    const { inner, driver } = make();
    const { secrets: _s, ...plain } = spec;
    await driver.start({ ...plain, instanceId: "p-1" });
    expect(inner.started[0]?.secretsDir).toBeUndefined();
    await expect(driver.specialize?.("pool-1", spec)).rejects.toMatchObject({ extra: { refused: true } });
    await expect(driver.specialize?.("pool-1", { ...plain, instanceId: "p-2" })).resolves.toMatchObject({
      instanceId: "p-2",
    });
  });
});
