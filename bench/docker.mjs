/**
 * The Docker driver and image builder: cold image build, cache-hit rebuild and image size (Node and Python
 * hello), then deploy → first response in image mode (each deploy is new code, so a new image build) and in
 * buildless mode (`build: none`: the runtime image with the code mounted, no build). Baseline, measured in
 * the same run: the engine's own container start — create + start a container of `node:20-slim` running a
 * 3-line HTTP server on a 127.0.0.1-published port, until it answers.
 *
 * Needs a Docker engine (`.ci/run` starts one and seeds the base images).
 */
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import { request } from "undici";
import { startDaemon } from "./lib/daemon.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { RUNTIMES } from "./lib/runtimes.mjs";
import { mib, ms, ratio, summarize } from "./lib/stats.mjs";

export const name = "docker";
export const title = "Docker: image builds, cache hits, image vs buildless deploy";

const SERVER = `require("http").createServer((q, s) => s.end("ok")).listen(8080)`;

/** The engine's floor: container create + start + the first answer of a tiny Node server in it. */
async function engineStart(docker) {
  const started = performance.now();
  const container = await docker.createContainer({
    Image: "node:20-slim",
    Cmd: ["node", "-e", SERVER],
    ExposedPorts: { "8080/tcp": {} },
    Labels: { "funcd.bench": "1" },
    HostConfig: { PortBindings: { "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] }, AutoRemove: false },
  });
  try {
    await container.start();
    const info = await container.inspect();
    const port = Number(info.NetworkSettings.Ports["8080/tcp"][0].HostPort);
    for (;;) {
      try {
        const res = await request(`http://127.0.0.1:${port}/`);
        await res.body.text();
        if (res.statusCode === 200) break;
      } catch {
        // Not listening yet.
      }
      await sleep(5);
    }
    return performance.now() - started;
  } finally {
    await container.remove({ force: true });
  }
}

async function callUntil200(daemon, fnName) {
  for (let tries = 0; ; tries++) {
    const res = await daemon.invoke(`/function/${fnName}`);
    if (res.status === 200) return;
    if (tries > 300) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
    await sleep(10);
  }
}

export async function run({ quick, log }) {
  const runs = quick ? 2 : 5;
  const cleanup = cleanupStack();
  const raw = { runs };
  const rows = [];
  const summary = [];
  const notes = [];
  const docker = new Docker();
  const stamp = Date.now().toString(36);
  try {
    log(`engine baseline: ${runs} container starts`);
    await engineStart(docker); // first one pays for loading the image's layers
    const base = summarize(await timesOf(runs, () => engineStart(docker)));
    raw.engineStart = base;
    rows.push([
      "engine: container create + start → first answer (baseline)",
      ms(base.median),
      ms(base.max),
      "1.00×",
      "–",
    ]);

    const daemon = await startDaemon({
      env: { FUNCD_DRIVER: "docker", FUNCD_LOG_LEVEL: "error" },
      startTimeoutMs: 120_000,
    });
    cleanup.defer(daemon.stop);

    for (const key of ["node", "python"]) {
      const rt = RUNTIMES[key];
      log(`${rt.label}: cold builds and cache hits`);
      const cold = [];
      const hits = [];
      let size;
      for (let i = 0; i < runs; i++) {
        const body = {
          name: `bench-${key}-${stamp}-${i}`,
          runtime: rt.runtime,
          files: rt.files(` ${i}`),
          noCache: true,
        };
        const t0 = performance.now();
        const built = await daemon.api("POST", "/api/v1/builds", body);
        cold.push(performance.now() - t0);
        size = built.sizeBytes;
        const t1 = performance.now();
        const again = await daemon.api("POST", "/api/v1/builds", { ...body, noCache: false });
        hits.push(performance.now() - t1);
        if (!again.cached) notes.push(`${rt.label} run ${i + 1}: the unchanged rebuild was not a cache hit.`);
      }
      const c = summarize(cold);
      const h = summarize(hits);
      raw[`${key}Build`] = { cold: c, hit: h, sizeBytes: size };
      rows.push([
        `${rt.label}: cold image build (no cache)`,
        ms(c.median),
        ms(c.max),
        ratio(c.median, base.median),
        mib(size),
      ]);
      rows.push([
        `${rt.label}: unchanged rebuild (cache hit)`,
        ms(h.median),
        ms(h.max),
        ratio(h.median, base.median),
        "–",
      ]);
      summary.push({
        target: `${rt.label}: cache-hit rebuild well under a second`,
        measured: `${ms(h.median)} (cold ${ms(c.median)}, image ${mib(size)})`,
        met: h.max < 1000,
      });
    }

    const noPool = await startDaemon({
      env: { FUNCD_DRIVER: "docker", FUNCD_LOG_LEVEL: "error", FUNCD_POOL_SIZE: "0" },
      startTimeoutMs: 120_000,
    });
    cleanup.defer(noPool.stop);
    const deployCases = [
      { key: "image", build: "image", on: daemon, label: "image mode (build per deploy)" },
      { key: "buildless", build: "none", on: daemon, label: "buildless (code mounted), warm pool" },
      {
        key: "buildless-nopool",
        build: "none",
        on: noPool,
        label: "buildless, no warm pool (FUNCD_POOL_SIZE=0)",
      },
    ];
    for (const c of deployCases) {
      log(`deploy → first response, ${c.label}: ${runs} deploys`);
      const samples = [];
      // One function, new code each time: the realistic edit-deploy loop.
      const fnName = `deploy-${c.key}-${stamp}`;
      await c.on.deploy(fnName, { build: c.build, files: RUNTIMES.node.files(" warm-up") });
      for (let i = 0; i < runs; i++) {
        // The pool refills a moment after a take; back-to-back deploys would measure the refill.
        await sleep(1500);
        const t0 = performance.now();
        await c.on.deploy(fnName, { build: c.build, files: RUNTIMES.node.files(` ${c.key} ${i}`) });
        await callUntil200(c.on, fnName);
        samples.push(performance.now() - t0);
      }
      const s = summarize(samples);
      raw[`deploy-${c.key}`] = s;
      rows.push([
        `Node deploy → first response, ${c.label}`,
        ms(s.median),
        ms(s.max),
        ratio(s.median, base.median),
        "–",
      ]);
      summary.push({
        target: `deploy → first response, ${c.label}`,
        measured: `${ms(s.median)} (${ratio(s.median, base.median)} of the engine's container start)`,
        met: undefined,
      });
    }
  } finally {
    await cleanup.run();
    const leftovers = await docker.listContainers({ all: true, filters: { label: ["funcd.bench=1"] } });
    for (const c of leftovers)
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {});
    // The function images this run built (their names carry the run's stamp); runtime images stay.
    const images = await docker.listImages({
      filters: { label: ["funcd.managed=true", "funcd.kind=function"] },
    });
    for (const image of images) {
      if (!image.RepoTags?.some((t) => t.includes(stamp))) continue;
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => {});
    }
  }
  notes.push(
    `${runs} runs per row; "max" is the slowest. Cold builds use noCache (every layer rebuilt from the local base image); ` +
      "cache hits send the same code again. Deploys change the handler's code each time.",
    "Baseline: the engine alone starting a container of node:20-slim with a 3-line HTTP server until it answers on its 127.0.0.1-published port.",
  );
  return {
    summary,
    sections: [
      { table: { header: ["case", "median", "max", "vs engine start", "image size"], rows }, notes },
    ],
    raw,
  };
}

async function timesOf(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
}
