/**
 * The swarm driver against the driver conformance suite, on the real 3-node swarm of
 * `scripts/swarm-lab.sh up` (buildless mode: a thin code image pushed to the lab's registry), plus what
 * only a cluster shows: tasks spread over nodes, secrets as Swarm secrets on every node, and a registry
 * that cannot be pushed to. Under CI=true a lab that is not up fails the suite instead of skipping it.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { create as tar } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABELS } from "../../src/drivers/common/engine.js";
import { invokeInstance, runDriverConformance } from "../../src/drivers/conformance.js";
import type { InstanceSpec, LogSink } from "../../src/drivers/driver.js";
import { SwarmDriver } from "../../src/drivers/swarm/index.js";
import { probeSwarmLab, type SwarmLab } from "../helpers/swarm-lab.js";

const here = dirname(fileURLToPath(import.meta.url));
const templatesDir = resolve(here, "../../templates");
const silent = pino({ level: "silent" });

const { lab, skip: skipReason } = await probeSwarmLab();
const daemonId = `t${process.pid}${randomUUID().slice(0, 6)}`;
const runtimeTag = `funcd-test-${daemonId}-runtime:nodejs20`;
const workDir = await mkdtemp(join(tmpdir(), "funcd-sw-"));
const imageEnv = lab
  ? ((await lab.engine.docker.getImage("node:20-slim").inspect()).Config.Env ?? []).map((kv) =>
      kv.slice(0, kv.indexOf("=")),
    )
  : [];

/** The runtime image (the template's `runtime` stage), built on the manager's engine. */
async function buildRuntime(l: SwarmLab): Promise<void> {
  const context = await mkdtemp(join(workDir, "ctx-"));
  const dockerfile = join(templatesDir, "nodejs20", "Dockerfile");
  if (!existsSync(dockerfile)) throw new Error("templates/nodejs20/Dockerfile is missing");
  await writeFile(join(context, "Dockerfile"), await readFile(dockerfile, "utf8"));
  await cp(join(templatesDir, "nodejs20"), join(context, "runtime"), { recursive: true });
  const archive = tar({ cwd: context, portable: true }, ["."]) as unknown as NodeJS.ReadableStream;
  const stream = await l.engine.docker.buildImage(archive, {
    t: runtimeTag,
    target: "runtime",
    labels: { [LABELS.managed]: "true", [LABELS.daemon]: daemonId },
    rm: true,
  });
  const out = await new Promise<{ error?: string }[]>((done, fail) =>
    l.engine.docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) =>
      err ? fail(err) : done(res),
    ),
  );
  const failed = out.find((o) => o.error !== undefined);
  if (failed) throw new Error(`building the runtime image failed: ${failed.error}`);
}

beforeAll(async () => {
  if (lab) await buildRuntime(lab);
}, 180_000);

afterAll(async () => {
  if (lab) {
    const { docker } = lab.engine;
    const filters = { label: [`${LABELS.daemon}`] };
    for (const s of (await docker.listServices({ filters })) as {
      ID: string;
      Spec?: { Labels?: Record<string, string> };
    }[]) {
      if (s.Spec?.Labels?.[LABELS.daemon]?.startsWith(daemonId))
        await docker
          .getService(s.ID)
          .remove()
          .catch(() => undefined);
    }
    for (const s of (await docker.listSecrets({ filters })) as {
      ID: string;
      Spec?: { Labels?: Record<string, string> };
    }[]) {
      if (s.Spec?.Labels?.[LABELS.daemon]?.startsWith(daemonId))
        await docker
          .getSecret(s.ID)
          .remove()
          .catch(() => undefined);
    }
  }
  await rm(workDir, { recursive: true, force: true });
});

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

function newDriver(logSink: LogSink, registry = (lab as SwarmLab).registry): SwarmDriver {
  return new SwarmDriver({
    engine: (lab as SwarmLab).engine,
    daemonId,
    registry,
    logSink,
    logger: silent,
    runtimeImage: async () => runtimeTag,
    workDir: join(workDir, "images"),
  });
}

/** The services of one instance still on the swarm (for "nothing left"). */
async function servicesOf(instanceId: string): Promise<string[]> {
  const list = (await (lab as SwarmLab).engine.docker.listServices({
    filters: { label: [`${LABELS.daemon}=${daemonId}`, `${LABELS.instance}=${instanceId}`] },
  })) as { Spec?: { Name?: string } }[];
  return list.map((s) => `service ${s.Spec?.Name}`);
}

if (skipReason === undefined) {
  runDriverConformance({
    name: "swarm (3-node lab; buildless: code image through the registry)",
    newDriver: (logSink) => newDriver(logSink),
    prepareArtifact,
    remains: async (info) => () => servicesOf(info.instanceId),
    ambientEnv: [...imageEnv, "FUNCD_SECRET_VARS"],
    // A start pushes a code image and waits for the scheduler; a stop goes through the manager and the
    // node's agent (measured 3–4 s for a 1 s grace on the lab with two busy cores).
    slowerByMs: 10_000,
  });
} else {
  describe("driver conformance: swarm", () => {
    it.skip(`every case (skipped: ${skipReason})`, () => undefined);
  });
}

const itLab = (title: string, fn: () => Promise<void>, timeout = 180_000) =>
  skipReason === undefined ? it(title, fn, timeout) : it.skip(`${title} (skipped: ${skipReason})`, fn);

describe("swarm driver on the lab", () => {
  let counter = 0;
  const specOf = async (
    functionName: string,
    files: Record<string, string>,
    extra: Partial<InstanceSpec> = {},
  ): Promise<InstanceSpec> => ({
    instanceId: `${functionName}-${process.pid}-${++counter}`,
    functionName,
    revisionId: "r1",
    runtime: "nodejs20",
    artifactDir: await prepareArtifact(files),
    handler: "handler.main",
    env: {},
    memoryMb: 64,
    timeoutMs: 10_000,
    ...extra,
  });
  const hostname = `exports.main = async () => require("node:os").hostname();\n`;

  itLab("instances of one function are spread over the nodes (tasks on at least two nodes)", async () => {
    const driver = newDriver(() => undefined);
    try {
      const specs = await Promise.all([1, 2, 3].map(() => specOf("spread", { "handler.js": hostname })));
      const infos = await Promise.all(specs.map((spec) => driver.start(spec)));
      const perNode = new Map<string, number>();
      for (const info of infos) {
        const address = info.address as { host: string; port: number };
        for (let i = 0; i < 5; i++) {
          const reply = await invokeInstance(info.address);
          expect(reply.status).toBe(200);
          perNode.set(address.host, (perNode.get(address.host) ?? 0) + 1);
        }
      }
      // The split per node, for the report (the test asserts only that it spans nodes).
      process.stdout.write(`requests per node: ${JSON.stringify(Object.fromEntries(perNode))}\n`);
      expect(perNode.size).toBeGreaterThanOrEqual(2);
    } finally {
      await driver.dispose();
    }
  });

  itLab(
    "secrets are Swarm secrets: files under /var/secrets and env vars on every node, never in the service spec",
    async () => {
      const driver = newDriver(() => undefined);
      const reader = [
        `const fs = require("node:fs");`,
        `exports.main = async () => ({ file: fs.readFileSync("/var/secrets/db-password", "utf8"), env: process.env.DB_PASSWORD, host: require("node:os").hostname() });`,
      ].join("\n");
      try {
        const value = `s3cret-${randomUUID()}`;
        const specs = await Promise.all(
          [1, 2, 3].map(() =>
            specOf("secretive", { "handler.js": reader }, { secrets: { "db-password": Buffer.from(value) } }),
          ),
        );
        const infos = await Promise.all(specs.map((spec) => driver.start(spec)));
        const hosts = new Set<string>();
        for (const info of infos) {
          const reply = await invokeInstance(info.address);
          const body = JSON.parse(reply.text) as { file: string; env: string; host: string };
          expect(body.file).toBe(value);
          expect(body.env).toBe(value);
          hosts.add((info.address as { host: string }).host);
        }
        expect(hosts.size).toBeGreaterThanOrEqual(2);
        const services = (await (lab as SwarmLab).engine.docker.listServices({
          filters: { label: [`${LABELS.daemon}=${daemonId}`, `${LABELS.function}=secretive`] },
        })) as unknown[];
        expect(services.length).toBe(3);
        expect(JSON.stringify(services)).not.toContain(value);
      } finally {
        await driver.dispose();
      }
    },
  );

  itLab("a registry that cannot be reached fails the start with REGISTRY_UNAVAILABLE naming it", async () => {
    const driver = newDriver(() => undefined, "10.213.0.1:5999");
    try {
      const spec = await specOf("unpushable", { "handler.js": hostname });
      await expect(driver.start(spec)).rejects.toMatchObject({
        code: "REGISTRY_UNAVAILABLE",
        message: expect.stringContaining("10.213.0.1:5999"),
      });
      expect(await servicesOf(spec.instanceId)).toEqual([]);
    } finally {
      await driver.dispose();
    }
  });
});
