/**
 * `funcd server` with FUNCD_DRIVER=docker, driven over HTTP like a user would: deploys build images (or,
 * buildless, mount the code into the runtime's image), build-time tests and build failures keep the
 * previous revision serving, deletes remove containers, and a daemon killed with SIGKILL takes its
 * running containers back on the next start. Under CI=true a missing engine fails these tests.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";
import { containersOf, imagesOf, probeDocker, removeImagesOf } from "../helpers/docker.js";
import { eventually } from "../helpers/platform-conformance.js";

const { engine, skip } = await probeDocker();
const run = randomBytes(3).toString("hex");
const deployed = new Set<string>();
/** A function name unique to this run (images and containers of other runs never meet it). */
const fn = (base: string) => {
  const name = `dd${run}-${base}`;
  deployed.add(name);
  return name;
};
const code = (body: string) => ({ "handler.js": body });
const ANSWER = (text: string) => `module.exports = { main: () => ${JSON.stringify(text)} };`;

interface DeployAnswer {
  status: number;
  progress: string[];
  result?: { changed: boolean; revision: { id: string; number: number; image: string | null } } | undefined;
  problem?: { code: string; detail: string; failures?: unknown[] } | undefined;
}

let daemon: Daemon;
/** The engine (the suite is skipped without one). */
const docker = () => {
  if (!engine) throw new Error("no Docker engine");
  return engine;
};
const idOf = (d: Daemon) => readFileSync(path.join(d.dataDir, "daemon-id"), "utf8").trim();

/** Deploys through the NDJSON stream the CLI uses, so the build's progress can be checked. */
async function deploy(
  name: string,
  files: Record<string, string>,
  spec: Record<string, unknown> = {},
  on: Daemon = daemon,
): Promise<DeployAnswer> {
  const res = await on.api(
    "PUT",
    `/api/v1/functions/${name}`,
    { runtime: "nodejs20", ...spec, files },
    { accept: "application/x-ndjson" },
  );
  const events = res.text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { type: string; message?: string; problem?: DeployAnswer["problem"] });
  const last = events.at(-1) as Record<string, unknown>;
  return {
    status: res.status,
    progress: events.filter((e) => e.type === "progress").map((e) => e.message ?? ""),
    ...(last.type === "result" ? { result: last as unknown as DeployAnswer["result"] } : {}),
    ...(last.type === "error" ? { problem: last.problem as DeployAnswer["problem"] } : {}),
  };
}

describe.skipIf(skip !== undefined)(
  `daemon with the docker driver${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    beforeAll(async () => {
      daemon = await startDaemon({ env: { FUNCD_DRIVER: "docker" } });
    }, 60_000);

    afterAll(async () => {
      await daemon?.stop();
      if (daemon) removeDir(daemon.dataDir);
      if (engine) for (const name of deployed) await removeImagesOf(engine, name);
    }, 60_000);

    it("builds a Node function into an image, serves it through the gateway and keeps the build log", async () => {
      const name = fn("hello");
      const answer = await deploy(name, code(ANSWER("hi from an image")));
      expect(answer.problem).toBeUndefined();
      const tag = answer.result?.revision.image ?? "";
      expect(tag).toMatch(new RegExp(`^funcd/${name}:[0-9a-f]{16,20}$`));
      expect(answer.progress).toContain(`building image ${tag}`);
      expect(answer.progress.some((p) => p.startsWith("Step "))).toBe(true);

      const res = await daemon.call("GET", `/function/${name}`);
      expect(res.status).toBe(200);
      expect(res.text).toBe("hi from an image");
      const containers = await containersOf(docker(), idOf(daemon), name);
      expect(containers.map((c) => c.image)).toEqual([tag]);

      const revision = await daemon.api("GET", `/api/v1/functions/${name}/revisions/active`);
      expect(revision.json()).toMatchObject({
        image: tag,
        buildLog: expect.stringContaining(`Successfully tagged ${tag}`),
      });
      const described = await daemon.cli(["describe", name]);
      expect(described.stdout).toContain(`Image:       ${tag}`);
      expect(described.stdout).toContain("Build log (last 10");
      const log = await daemon.cli(["describe", name, "--build-log"]);
      expect(log.stdout).toContain("Step 1/");
    });

    it("an unchanged redeploy builds nothing, and an env change reuses the image", async () => {
      const name = fn("cached");
      const first = await deploy(name, code(ANSWER("same")));
      const tag = first.result?.revision.image;
      const began = performance.now();
      const again = await deploy(name, code(ANSWER("same")));
      expect(performance.now() - began).toBeLessThan(1000);
      expect(again.result).toMatchObject({ changed: false, revision: { number: 1, image: tag } });
      expect(again.progress).toContain(`image ${tag} unchanged (cache hit)`);

      // The env is not baked into the image: a new revision, the same image, no build.
      const env = await deploy(name, code(ANSWER("same")), { env: { GREETING: "hi" } });
      expect(env.result).toMatchObject({ changed: true, revision: { number: 2, image: tag } });
      expect(env.progress).toContain(`image ${tag} is up to date (cache hit)`);
      expect(env.progress.some((p) => p.startsWith("Step "))).toBe(false);
      expect(await imagesOf(docker(), name)).toEqual([tag]);
      // The new revision shows the log of the build that made its image.
      const second = await daemon.api("GET", `/api/v1/functions/${name}/revisions/2`);
      expect(second.json()).toMatchObject({
        buildLog: expect.stringContaining(`Successfully tagged ${tag}`),
      });
    });

    it("a failing build-time test fails the deploy and the previous revision keeps serving", async () => {
      const name = fn("tested");
      const tests = [{ name: "greets", expect: { body: "v1" } }];
      expect((await deploy(name, code(ANSWER("v1")), { tests })).result?.revision.number).toBe(1);
      const failed = await deploy(name, code(ANSWER("v2")), { tests });
      expect(failed.problem?.code).toBe("BUILD_TEST_FAILED");
      expect(failed.problem?.detail).toContain(`test 'greets' (GET /):\n    body: expected "v1", got "v2"`);
      expect(failed.progress.some((p) => /^test 'greets' failed \(\d+ ms\)$/.test(p))).toBe(true);
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v1");
      // The proving container of the failed revision is gone; the serving one stays.
      await eventually(async () => {
        const images = (await containersOf(docker(), idOf(daemon), name)).map((c) => c.image);
        expect(images).toHaveLength(1);
      });
    });

    it("a failing image build fails the deploy with its log, and the previous revision keeps serving", async () => {
      const name = fn("broken");
      await deploy(name, code(ANSWER("ok")));
      const failed = await deploy(name, code("module.exports = { main: () => 'x' ;"));
      expect(failed.problem?.code).toBe("IMAGE_BUILD_FAILED");
      expect(failed.problem?.detail).toContain("The previous revision keeps serving.");
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("ok");
      const revisions = await daemon.api("GET", `/api/v1/functions/${name}/revisions/2`);
      expect(revisions.json()).toMatchObject({
        status: "failed",
        buildLog: expect.stringContaining("SyntaxError"),
      });
    });

    it("buildless: serves the mounted code, and a code change is live without an image build", async () => {
      const name = fn("mounted");
      const first = await deploy(name, code(ANSWER("v1")), { build: "none" });
      expect(first.result?.revision.image).toBeNull();
      expect(first.progress.some((p) => p.startsWith("building image"))).toBe(false);
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v1");
      // It runs in a container of the runtime's image (one from the warm pool, when the pool had one
      // ready: those keep the pool's labels, so look at all of this daemon's containers).
      const images = (await containersOf(docker(), idOf(daemon))).map((c) => c.image);
      expect(images.some((image) => image.startsWith("funcd/runtime-nodejs20:"))).toBe(true);
      expect(images.some((image) => image.startsWith(`funcd/${name}:`))).toBe(false);

      const second = await deploy(name, code(ANSWER("v2")), { build: "none" });
      expect(second.result?.revision.number).toBe(2);
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v2");

      // The CLI's --buildless says the same.
      const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-dd-"));
      try {
        writeFileSync(path.join(dir, "handler.js"), ANSWER("v3"));
        const cli = await daemon.cli(["deploy", dir, "--name", name, "--buildless"]);
        expect(cli.code).toBe(0);
        expect(cli.stderr).not.toContain("building image");
      } finally {
        removeDir(dir);
      }
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v3");
      expect(await imagesOf(docker(), name)).toEqual([]);
    });

    it("deleting a function removes its containers", async () => {
      const name = fn("doomed");
      await deploy(name, code(ANSWER("bye")), { scale: { min: 2 } });
      await eventually(async () => {
        const running = (await containersOf(docker(), idOf(daemon), name)).filter(
          (c) => c.state === "running",
        );
        expect(running).toHaveLength(2);
      });
      expect((await daemon.api("DELETE", `/api/v1/functions/${name}`)).status).toBe(204);
      const left = await containersOf(docker(), idOf(daemon), name);
      expect(left).toEqual([]);
    });

    it("a crash is reported as crashed, not unhealthy, even with health checks every 50 ms", async () => {
      // The engine reports a container's exit ~150 ms after its process died, while a health check finds
      // it dead at once: the crash must still be the driver's report, not the health check's verdict.
      const own = await startDaemon({
        env: { FUNCD_DRIVER: "docker", FUNCD_HEALTH_CHECK_INTERVAL_MS: "50" },
      });
      try {
        const name = fn("crashy");
        const crashy =
          "module.exports = { main: (e) => { if (e.query.crash) setTimeout(() => process.exit(7), 20); return 'fine'; } };";
        expect((await deploy(name, code(crashy), { build: "none" }, own)).problem).toBeUndefined();
        const view = async () =>
          (await own.api("GET", `/api/v1/functions/${name}`)).json<{
            instances: { instanceId: string }[];
            lastExit: { instanceId: string; reason: string; code: number | null } | null;
          }>();
        for (let round = 0; round < 3; round++) {
          // A fresh instance after each crash (the fleet may still be backing off).
          await eventually(async () =>
            expect((await own.call("GET", `/function/${name}`)).text).toBe("fine"),
          );
          const [instance] = (await view()).instances;
          expect((await own.call("GET", `/function/${name}?crash=1`)).status).toBe(200);
          const exit = await eventually(async () => {
            const last = (await view()).lastExit;
            expect(last?.instanceId).toBe(instance?.instanceId);
            return last;
          });
          expect(exit).toMatchObject({ reason: "crashed", code: 7 });
        }
      } finally {
        await own.stop();
        removeDir(own.dataDir);
      }
    }, 120_000);

    it("a daemon killed with SIGKILL adopts its running container on the next start", async () => {
      const own = await startDaemon({ env: { FUNCD_DRIVER: "docker" } });
      try {
        const name = fn("survivor");
        // It prints a numbered tick every 100 ms, also while no daemon runs.
        await deploy(
          name,
          code(
            [
              "const id = String(Math.random());",
              "let n = 0;",
              'setInterval(() => console.log("tick " + ++n), 100);',
              "module.exports = { main: () => id };",
            ].join("\n"),
          ),
          {},
          own,
        );
        const before = await own.call("GET", `/function/${name}`);
        const containers = await containersOf(docker(), idOf(own), name);
        expect(containers).toHaveLength(1);
        await own.stop("SIGKILL");
        await sleep(1000);

        const again = await startDaemon({ dataDir: own.dataDir, env: { FUNCD_DRIVER: "docker" } });
        try {
          // A few autoscaler rounds (one a second): the adopted instance is kept, idle timeout starting over.
          await sleep(2500);
          const after = await again.call("GET", `/function/${name}`);
          expect(after.status).toBe(200);
          expect(after.text).toBe(before.text);
          expect(await containersOf(docker(), idOf(again), name)).toEqual(containers);
          // Every tick it printed is in the log store once — those of the second no daemon ran too: no
          // gap in the numbering from 1, and none twice.
          const res = await again.api("GET", `/api/v1/functions/${name}/logs?tail=10000`);
          const ticks = res.text
            .split("\n")
            .filter(Boolean)
            .map((l) => /tick (\d+)/.exec((JSON.parse(l) as { text: string }).text)?.[1])
            .filter((t): t is string => t !== undefined)
            .map(Number);
          expect(ticks.length).toBeGreaterThan(20);
          expect(ticks).toEqual(ticks.map((_, i) => i + 1));
        } finally {
          await again.stop();
        }
        expect(await containersOf(docker(), idOf(own), name)).toEqual([]);
      } finally {
        await own.stop();
        removeDir(own.dataDir);
      }
    }, 120_000);
  },
);
