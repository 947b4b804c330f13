/**
 * The Docker driver against the conformance suite (buildless mode: the runtime's image with the
 * function's folder mounted), plus what only containers promise: the hardening as the engine reports
 * it, image mode, `network: none`, and a reconcile that adopts its own healthy containers, removes its
 * own strays and never touches anyone else's.
 *
 * It builds a small runtime image of its own (node:20-slim + templates/nodejs20) and labels everything
 * with a per-run daemon id, removed at the end. Under CI=true a missing engine fails the suite instead
 * of skipping it.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type Docker from "dockerode";
import { pino } from "pino";
import { create as tar } from "tar";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { invokeInstance, runDriverConformance } from "../../src/drivers/conformance.js";
import { containerName } from "../../src/drivers/docker/container-config.js";
import { DockerDriver } from "../../src/drivers/docker/docker-driver.js";
import { connectEngine, type Engine, LABELS } from "../../src/drivers/docker/engine.js";
import type { InstanceInfo, InstanceSpec, LogLine, LogSink } from "../../src/drivers/driver.js";
import { loadTemplate } from "../../src/drivers/process/template.js";

const here = dirname(fileURLToPath(import.meta.url));
const templatesDir = resolve(here, "../../templates");
const isCI = process.env.CI === "true";
const silent = pino({ level: "silent" });

const engine: Engine | undefined = await connectEngine({ timeoutMs: 3_000 }).catch((err: unknown) => {
  if (isCI) throw err;
  return undefined;
});
const hasBase = engine
  ? await engine.docker
      .getImage("node:20-slim")
      .inspect()
      .then(
        () => true,
        () => false,
      )
  : false;
/** Why everything here is skipped; never set under CI, where it fails instead. */
const skipReason =
  engine === undefined
    ? "no Docker engine answers (start dockerd, or set DOCKER_HOST)"
    : !hasBase && !isCI
      ? "the base image node:20-slim is missing (run scripts/seed-base-images.sh)"
      : undefined;

/** Per run, so this run's reconcile never sees another run's (or a real daemon's) containers. */
const daemonId = `test-${process.pid}-${randomUUID().slice(0, 8)}`;
const tagPrefix = `funcd-test-${daemonId}`;
const runtimeTag = `${tagPrefix}-runtime:nodejs20`;
const workDir = await mkdtemp(join(tmpdir(), "funcd-dd-"));
/** The base image's own ENV names (NODE_VERSION, …): ambient for the conformance env case. */
const imageEnv = hasBase
  ? ((await (engine as Engine).docker.getImage("node:20-slim").inspect()).Config.Env ?? []).map((kv) =>
      kv.slice(0, kv.indexOf("=")),
    )
  : [];

/** Builds `dockerfile` with `files` as its context; resolves to the tag. */
async function buildImage(
  tag: string,
  dockerfile: string,
  files: Record<string, string> = {},
  dirs: Record<string, string> = {},
  target?: string,
): Promise<string> {
  const docker = (engine as Engine).docker;
  const context = await mkdtemp(join(workDir, "ctx-"));
  await writeFile(join(context, "Dockerfile"), dockerfile);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(context, name)), { recursive: true });
    await writeFile(join(context, name), text);
  }
  for (const [name, from] of Object.entries(dirs)) await cp(from, join(context, name), { recursive: true });
  const archive = tar({ cwd: context, portable: true }, ["."]) as unknown as NodeJS.ReadableStream;
  const stream = await docker.buildImage(archive, {
    t: tag,
    labels: { [LABELS.managed]: "true", [LABELS.daemon]: daemonId },
    rm: true,
    forcerm: true,
    ...(target === undefined ? {} : { target }),
  });
  const output = await new Promise<{ error?: string; stream?: string }[]>((done, fail) =>
    docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) =>
      err ? fail(err) : done(res),
    ),
  );
  const failed = output.find((o) => o.error !== undefined);
  if (failed)
    throw new Error(`building ${tag} failed: ${failed.error}\n${output.map((o) => o.stream ?? "").join("")}`);
  return tag;
}

/**
 * The runtime image: the `runtime` stage of the template's own Dockerfile (what the image builder makes
 * for buildless mode), or — before the template had one — the same recipe written out here.
 */
const templateDockerfile = join(templatesDir, "nodejs20", "Dockerfile");
const FALLBACK_RUNTIME_DOCKERFILE = [
  "FROM node:20-slim",
  "COPY runtime/ /funcd/runtime/",
  "ENV FUNCD_LISTEN=8080 FUNCD_FUNCTION_DIR=/function FUNCD_RUNTIME=nodejs20",
  "USER 1000:1000",
  "EXPOSE 8080",
  'CMD ["node", "/funcd/runtime/server.mjs"]',
].join("\n");

beforeAll(async () => {
  if (skipReason !== undefined) return;
  const own = existsSync(templateDockerfile);
  await buildImage(
    runtimeTag,
    own ? await readFile(templateDockerfile, "utf8") : FALLBACK_RUNTIME_DOCKERFILE,
    {},
    { runtime: join(templatesDir, "nodejs20") },
    own ? "runtime" : undefined,
  );
}, 120_000);

/** This run's containers, of every daemon id it used (`<daemonId>…`). */
async function runContainers(): Promise<Docker.ContainerInfo[]> {
  const all = await (engine as Engine).docker.listContainers({
    all: true,
    filters: { label: [LABELS.daemon] },
  });
  return all.filter((c) => c.Labels[LABELS.daemon]?.startsWith(daemonId));
}

afterAll(async () => {
  if (engine !== undefined) {
    const { docker } = engine;
    const filters = { label: [`${LABELS.daemon}=${daemonId}`] };
    for (const c of await runContainers()) {
      await docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => undefined);
    }
    for (const image of await docker.listImages({ filters })) {
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    }
  }
  await rm(workDir, { recursive: true, force: true });
});

/** Writes a function's files into a folder the containers can read (0755/0644). */
async function prepareArtifact(files: Record<string, string>): Promise<string> {
  await mkdir(join(workDir, "artifacts"), { recursive: true });
  const dir = await mkdtemp(join(workDir, "artifacts", "rev-"));
  await chmod(dir, 0o755);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), text, { mode: 0o644 });
  }
  return dir;
}

function newDriver(logSink: LogSink, id = daemonId): DockerDriver {
  return new DockerDriver({
    engine: engine as Engine,
    daemonId: id,
    logSink,
    logger: silent,
    runtimeImage: async () => runtimeTag,
    pool: { slotsDir: join(workDir, `slots-${id}`), runtime: (name) => loadTemplate(templatesDir, name) },
  });
}

/** This run's containers of one instance, by label (for "nothing left"). */
async function containersOf(instanceId: string): Promise<string[]> {
  const list = await (engine as Engine).docker.listContainers({
    all: true,
    filters: { label: [`${LABELS.daemon}=${daemonId}`, `${LABELS.instance}=${instanceId}`] },
  });
  return list.map((c) => `container ${c.Names[0]} (${c.State})`);
}

if (skipReason === undefined) {
  runDriverConformance({
    name: "docker (buildless: runtime image + read-only code mount)",
    newDriver: (logSink) => newDriver(logSink),
    prepareArtifact,
    remains: async (info) => () => containersOf(info.instanceId),
    adopts: true,
    ambientEnv: imageEnv,
    skip: {
      poolIsolation:
        "containers keep functions apart by file system (each sees only its own /function), not by uid: every container runs as its image's user",
    },
  });
} else {
  describe("driver conformance: docker", () => {
    it.skip(`every case (skipped: ${skipReason})`, () => undefined);
  });
}

const itDocker = (title: string, fn: () => Promise<void>, timeout?: number) =>
  skipReason === undefined ? it(title, fn, timeout) : it.skip(`${title} (skipped: ${skipReason})`, fn);

/** Reports what the function can see and do from inside its container. */
const PROBE = `
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
exports.main = async (event) => {
  const { op, path, host, port } = event.data || {};
  try {
    if (op === "whoami") return { ok: true, result: { uid: process.getuid(), gid: process.getgid(), env: process.env } };
    if (op === "write") { fs.writeFileSync(path, "x"); return { ok: true }; }
    if (op === "interfaces") return { ok: true, result: Object.keys(os.networkInterfaces()).sort() };
    if (op === "connect") {
      return await new Promise((resolve) => {
        const socket = net.connect({ host, port, timeout: 2000 });
        socket.once("connect", () => { socket.destroy(); resolve({ ok: true }); });
        socket.once("timeout", () => { socket.destroy(); resolve({ ok: false, code: "TIMEOUT" }); });
        socket.once("error", (err) => resolve({ ok: false, code: err.code }));
      });
    }
    return { ok: false, code: "BAD_OP" };
  } catch (err) {
    return { ok: false, code: err.code };
  }
};
`;

interface ProbeResult {
  ok: boolean;
  result?: unknown;
  code?: string;
}

describe("docker driver", () => {
  let counter = 0;

  /** A Node instance of `functionName` with a new instance id; `overrides` win. */
  const specOf = (functionName: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec => ({
    instanceId: `${functionName}-${process.pid}-${++counter}`,
    functionName,
    revisionId: "r1",
    runtime: "nodejs20",
    artifactDir: workDir,
    handler: "handler.main",
    env: {},
    memoryMb: 128,
    timeoutMs: 10_000,
    ...overrides,
  });

  async function startProbe(overrides: Partial<InstanceSpec> = {}) {
    const logs: LogLine[] = [];
    const driver = newDriver((line) => logs.push(line));
    onTestFinished(() => driver.dispose());
    const spec = specOf("probe", {
      artifactDir: await prepareArtifact({ "handler.js": PROBE }),
      ...overrides,
    });
    const info = await driver.start(spec);
    const probe = async (request: Record<string, unknown>) => {
      const reply = await invokeInstance(info.address, {
        body: JSON.stringify(request),
        headers: { "content-type": "application/json" },
      });
      expect(reply.status).toBe(200);
      return JSON.parse(reply.text) as ProbeResult;
    };
    const details = await (engine as Engine).docker.getContainer(containerName(spec.instanceId)).inspect();
    return { driver, spec, info, probe, details, logs };
  }

  itDocker(
    "a container is hardened: non-root, read-only, no capabilities, limited, loopback only",
    async () => {
      const { spec, info, probe, details } = await startProbe({ cpus: 0.5, memoryMb: 96 });
      const host = details.HostConfig;
      expect(details.Config.User).toBe("1000:1000");
      expect(host.ReadonlyRootfs).toBe(true);
      expect(host.CapDrop).toEqual(["ALL"]);
      expect(host.CapAdd ?? []).toEqual([]);
      expect(host.Privileged).toBe(false);
      expect(host.SecurityOpt).toContain("no-new-privileges");
      expect((host.SecurityOpt as string[]).some((o) => o.includes("seccomp"))).toBe(false);
      expect(host.Memory).toBe(96 * 1024 * 1024);
      expect(host.MemorySwap).toBe(96 * 1024 * 1024);
      expect(host.PidsLimit).toBe(256);
      expect(host.NanoCpus).toBe(500_000_000);
      expect(host.Tmpfs).toEqual({ "/tmp": expect.stringContaining("noexec") });
      expect(host.Binds ?? []).toEqual([]);
      // The only host path inside is the function's folder, read-only.
      expect(details.Mounts).toEqual([
        expect.objectContaining({
          Type: "bind",
          Source: spec.artifactDir,
          Destination: "/function",
          RW: false,
        }),
      ]);
      expect(host.NetworkMode).toBe("funcd");
      const published = Object.values(details.NetworkSettings.Ports ?? {}).flat();
      expect(published.length).toBeGreaterThan(0);
      expect(published.every((b) => b?.HostIp === "127.0.0.1")).toBe(true);
      expect(info.address).toEqual({ host: "127.0.0.1", port: Number(published[0]?.HostPort) });
      expect(details.Config.Labels).toMatchObject({
        [LABELS.managed]: "true",
        [LABELS.daemon]: daemonId,
        [LABELS.function]: "probe",
        [LABELS.revision]: "r1",
        [LABELS.instance]: spec.instanceId,
      });
      // …and as the function sees it.
      const who = (await probe({ op: "whoami" })).result as { uid: number; env: Record<string, string> };
      expect(who.uid).toBe(1000);
      expect(who.env.FUNCD_MEMORY_LIMIT_MB).toBe("96");
      expect(await probe({ op: "write", path: "/etc/funcd-test" })).toEqual({ ok: false, code: "EROFS" });
      expect(await probe({ op: "write", path: "/function/handler.js" })).toEqual({
        ok: false,
        code: "EROFS",
      });
      expect(await probe({ op: "write", path: "/tmp/scratch" })).toEqual({ ok: true });
    },
  );

  itDocker("an image that would run as root runs as an unprivileged uid instead", async () => {
    const rootTag = await buildImage(
      `${tagPrefix}-rooty:1`,
      [`FROM ${runtimeTag}`, "COPY function/ /function/", "USER root"].join("\n"),
      { "function/handler.js": PROBE },
    );
    const { probe, details } = await startProbe({ image: rootTag });
    expect(details.Config.User).toBe("10001:10001");
    const who = (await probe({ op: "whoami" })).result as { uid: number; gid: number };
    expect(who).toMatchObject({ uid: 10001, gid: 10001 });
  });

  itDocker(
    "image mode: a function image with the code inside starts and serves, with no host mount",
    async () => {
      const tag = await buildImage(
        `${tagPrefix}-fn-greeter:1`,
        [`FROM ${runtimeTag}`, "COPY function/ /function/", "ENV FUNCD_HANDLER=handler.main"].join("\n"),
        {
          "function/handler.js": `exports.main = async (e, ctx) => "image says hi to " + ctx["function-name"];\n`,
        },
      );
      const driver = newDriver(() => undefined);
      onTestFinished(() => driver.dispose());
      const spec = specOf("greeter", {
        revisionId: "r-image",
        // Not mounted in image mode: the image has the code.
        artifactDir: "/nonexistent",
        image: tag,
        env: { GREETING: "x" },
      });
      const info = await driver.start(spec);
      expect((await invokeInstance(info.address)).text).toBe("image says hi to greeter");
      const details = await (engine as Engine).docker.getContainer(containerName(spec.instanceId)).inspect();
      expect(details.Mounts).toEqual([]);
      expect(details.Config.Image).toBe(tag);
    },
  );

  itDocker("a missing image is IMAGE_NOT_FOUND and leaves nothing", async () => {
    const driver = newDriver(() => undefined);
    onTestFinished(() => driver.dispose());
    const spec = specOf("ghost", { image: `${tagPrefix}-nope:1`, memoryMb: 64, timeoutMs: 1_000 });
    await expect(driver.start(spec)).rejects.toMatchObject({ code: "IMAGE_NOT_FOUND" });
    expect(await containersOf(spec.instanceId)).toEqual([]);
  });

  itDocker(
    "network: none — no interface but loopback, no way out, still answers through its socket",
    async () => {
      // The same function on the default network has an interface of its own.
      const open = await startProbe();
      expect((await open.probe({ op: "interfaces" })).result).toEqual(expect.arrayContaining(["eth0", "lo"]));

      const gateway = (await (engine as Engine).docker
        .getNetwork("funcd")
        .inspect()) as Docker.NetworkInspectInfo;
      const { info, probe, details } = await startProbe({ network: "none" });
      expect(info.address).toEqual({ socketPath: expect.stringMatching(/\/sock$/) });
      expect(details.HostConfig.NetworkMode).toBe("none");
      expect(details.HostConfig.PortBindings ?? {}).toEqual({});
      expect((await probe({ op: "interfaces" })).result).toEqual(["lo"]);
      // An address of this very host (the funcd bridge's gateway): without a route, no packet can leave.
      const hostAddress = gateway.IPAM?.Config?.[0]?.Gateway;
      expect(hostAddress).toBeTruthy();
      expect(await probe({ op: "connect", host: hostAddress, port: 9 })).toMatchObject({
        ok: false,
        code: "ENETUNREACH",
      });
    },
  );

  itDocker(
    "reconcile adopts its own healthy container, removes its own strays, never touches others'",
    async () => {
      const { docker } = engine as Engine;
      // A daemon id of its own: what other cases left must not count here.
      const id = `${daemonId}-reconcile`;
      const first = newDriver(() => undefined, id);
      onTestFinished(() => first.dispose());
      const healthy = await first.start(
        specOf("keeper", {
          revisionId: "r-keep",
          artifactDir: await prepareArtifact({ "handler.js": `exports.main = async () => "still here";\n` }),
          memoryMb: 64,
        }),
      );
      const created: string[] = [];
      onTestFinished(async () => {
        for (const id of created)
          await docker
            .getContainer(id)
            .remove({ force: true })
            .catch(() => undefined);
      });
      const make = async (labels: Record<string, string>, cmd: string[], start: boolean) => {
        const c = await docker.createContainer({
          Image: runtimeTag,
          Labels: labels,
          Cmd: cmd,
          HostConfig: { NetworkMode: "none" },
        });
        created.push(c.id);
        if (start) await c.start();
        return c.id;
      };
      const ours = (instance: string) => ({
        [LABELS.managed]: "true",
        [LABELS.daemon]: id,
        [LABELS.function]: "stray",
        [LABELS.revision]: "r",
        [LABELS.instance]: instance,
        [LABELS.kind]: "instance",
      });
      const idle = ["node", "-e", "setInterval(() => {}, 1000)"];
      const stopped = await make(ours(`stopped-${counter}`), idle, false);
      const unhealthy = await make(ours(`mute-${counter}`), idle, true);
      const unlabelled = await make({}, idle, true);
      const otherDaemon = await make(
        { ...ours(`theirs-${counter}`), [LABELS.daemon]: `${id}-other` },
        idle,
        true,
      );

      // `first` plays the crashed daemon: a new driver with the same daemon id looks at what it left.
      const second = newDriver(() => undefined, id);
      onTestFinished(() => second.dispose());
      const { removed } = await second.reconcile();
      expect(removed).toBe(2);
      const exists = async (id: string) =>
        docker
          .getContainer(id)
          .inspect()
          .then(
            (c) => c.State.Running,
            () => "gone",
          );
      expect(await exists(stopped)).toBe("gone");
      expect(await exists(unhealthy)).toBe("gone");
      expect(await exists(unlabelled)).toBe(true);
      expect(await exists(otherDaemon)).toBe(true);
      expect(second.list()).toEqual([
        expect.objectContaining({
          instanceId: healthy.instanceId,
          functionName: "keeper",
          adopted: true,
          state: "ready",
        }),
      ]);
      expect((await invokeInstance(healthy.address)).text).toBe("still here");
    },
  );

  itDocker("an adopted instance's crash is reported, with its output since adoption", async () => {
    const first = newDriver(() => undefined);
    onTestFinished(() => first.dispose());
    const spec = specOf("phoenix", {
      revisionId: "r-p",
      artifactDir: await prepareArtifact({
        "handler.js": `exports.main = async () => { console.log("going down"); setTimeout(() => process.exit(7), 50); return "bye"; };\n`,
      }),
      memoryMb: 64,
    });
    const info = await first.start(spec);
    const logs: LogLine[] = [];
    const second = newDriver((line) => logs.push(line));
    onTestFinished(() => second.dispose());
    const events: unknown[] = [];
    second.onEvent((e) => events.push(e));
    await second.reconcile();
    expect((await invokeInstance(info.address)).text).toBe("bye");
    await expect
      .poll(() => events, { timeout: 10_000 })
      .toEqual([
        expect.objectContaining({
          type: "exit",
          instanceId: spec.instanceId,
          exit: expect.objectContaining({ reason: "crashed", code: 7 }),
        }),
      ]);
    expect(logs.some((l) => l.text === "going down" && l.instanceId === spec.instanceId)).toBe(true);
    expect(second.list()).toEqual([]);
  });

  itDocker(
    "a warm pool container refuses functions that need a container of their own, and stays usable",
    async () => {
      const driver = newDriver(() => undefined);
      onTestFinished(() => driver.dispose());
      const poolId = `pool-${process.pid}-${++counter}`;
      await driver.startGeneric?.("nodejs20", { poolId, memoryMb: 128 });
      expect(driver.list()).toEqual([]);
      const artifactDir = await prepareArtifact({ "handler.js": `exports.main = async () => "pooled";\n` });
      const base = specOf("picky", { revisionId: "r", artifactDir });
      for (const [overrides, why] of [
        [{ image: runtimeTag }, /its own image/],
        [{ network: "none" }, /network: none/],
        [{ env: { NODE_OPTIONS: "--max-old-space-size=64" } }, /NODE_OPTIONS/],
      ] as const) {
        await expect(driver.specialize?.(poolId, { ...base, ...overrides })).rejects.toMatchObject({
          extra: { refused: true },
          message: expect.stringMatching(why),
        });
      }
      const info = await driver.specialize?.(poolId, { ...base, cpus: 0.5 });
      expect(info).toMatchObject({ instanceId: base.instanceId, fromPool: true, state: "ready" });
      expect((await invokeInstance((info as InstanceInfo).address)).text).toBe("pooled");
      // The function's CPU quota was applied to the running container.
      const details = await (engine as Engine).docker.getContainer(containerName(poolId)).inspect();
      expect(details.HostConfig.NanoCpus).toBe(500_000_000);
      expect(details.Config.Labels?.[LABELS.kind]).toBe("generic");
    },
  );

  /** Median, min and max of `times` in ms, as one line. */
  const summary = (times: number[]) => {
    const sorted = [...times].sort((a, b) => a - b);
    const mid = sorted.length / 2;
    const median = ((sorted[Math.floor(mid - 0.5)] as number) + (sorted[Math.ceil(mid - 0.5)] as number)) / 2;
    const line = `${median.toFixed(0)} ms median (min ${sorted[0]?.toFixed(0)}, max ${sorted.at(-1)?.toFixed(0)}) of ${sorted.length}`;
    return { median, line };
  };

  itDocker(
    "start → first answer (buildless), and specialization of a warm pool container → first answer, median of 10",
    async () => {
      const driver = newDriver(() => undefined);
      onTestFinished(() => driver.dispose());
      const startGeneric = driver.startGeneric?.bind(driver);
      const specialize = driver.specialize?.bind(driver);
      if (startGeneric === undefined || specialize === undefined) throw new Error("the driver has no pool");
      const artifactDir = await prepareArtifact({ "handler.js": `exports.main = async () => "ok";\n` });
      const specFor = () => specOf("timed", { revisionId: "r-t", artifactDir });
      const cold: number[] = [];
      const pooled: number[] = [];
      for (let i = 0; i < 10; i++) {
        const spec = specFor();
        const began = performance.now();
        const info: InstanceInfo = await driver.start(spec);
        expect((await invokeInstance(info.address)).text).toBe("ok");
        cold.push(performance.now() - began);
        await driver.stop(spec.instanceId, { graceMs: 0 });

        const poolId = `pool-${process.pid}-${++counter}`;
        await startGeneric("nodejs20", { poolId, memoryMb: 128 });
        const warm = specFor();
        const taken = performance.now();
        const warmInfo = await specialize(poolId, warm);
        expect((await invokeInstance(warmInfo.address)).text).toBe("ok");
        pooled.push(performance.now() - taken);
        await driver.stop(warm.instanceId, { graceMs: 0 });
      }
      const a = summary(cold);
      const b = summary(pooled);
      process.stderr.write(`docker driver: start → first answer ${a.line}\n`);
      process.stderr.write(`docker driver: warm pool specialize → first answer ${b.line}\n`);
      expect(a.median).toBeLessThan(5_000);
      expect(b.median).toBeLessThan(a.median);
    },
    120_000,
  );
});

// Last: nothing of this run is left on the engine (the images go in afterAll).
describe("docker driver clean-up", () => {
  itDocker("leaves no containers or volumes of this run behind", async () => {
    const { docker } = engine as Engine;
    const containers = await runContainers();
    expect(containers.map((c) => `${c.Names[0]} ${c.State}`)).toEqual([]);
    const volumes = (await docker.listVolumes({ filters: { label: [LABELS.daemon] } })).Volumes ?? [];
    expect(volumes.filter((v) => v.Labels?.[LABELS.daemon]?.startsWith(daemonId)).map((v) => v.Name)).toEqual(
      [],
    );
    // …nor pool slots.
    const slots = (await readdir(workDir)).filter((name) => name.startsWith("slots-"));
    for (const dir of slots) expect(await readdir(join(workDir, dir))).toEqual([]);
  });
});
