/**
 * The swarm driver on the 3-node lab (`sudo scripts/swarm-lab.sh up`), each figure next to the Docker
 * driver on the host engine measured in the same run (the baseline): cold start from zero instances
 * (p50/p99), buildless deploy → first response, warm requests per second through the gateway (8 clients,
 * one instance), and — swarm only — the time until a function with 3 instances is back at full strength
 * after a worker node is lost (every process of it killed), with the requests that failed meanwhile.
 * Opt-in (`npm run bench -- swarm`): it needs the lab, and it kills and restarts a lab node.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import { ROOT, startDaemon } from "./lib/daemon.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { RUNTIMES } from "./lib/runtimes.mjs";
import { ms, ratio, summarize } from "./lib/stats.mjs";

export const name = "swarm";
export const title = "Swarm driver on the 3-node lab vs the Docker driver";
export const optIn = true;

const LAB_SCRIPT = path.join(ROOT, "scripts", "swarm-lab.sh");

function labEnv() {
  const file = path.join(process.env.FUNCD_SWARM_LAB || "/run/funcd-swarm-lab", "env");
  if (!existsSync(file))
    throw new Error(`the swarm lab is not up (no ${file}): run sudo scripts/swarm-lab.sh up`);
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

async function callUntil200(daemon, fnName) {
  for (let tries = 0; ; tries++) {
    const res = await daemon.invoke(`/function/${fnName}`).catch(() => ({ status: 0, text: "" }));
    if (res.status === 200) return res;
    if (tries > 600) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
    await sleep(20);
  }
}

/** Cold starts: after each one the function idles back to zero instances. */
async function coldStarts(daemon, fnName, runs) {
  await daemon.deploy(fnName, {
    build: "none",
    scale: { idleTimeout: "1s" },
    files: RUNTIMES.node.files(" cold"),
  });
  const samples = [];
  for (let i = 0; i < runs + 1; i++) {
    await daemon.waitForZero(fnName, 60_000);
    const t0 = performance.now();
    await callUntil200(daemon, fnName);
    if (i > 0) samples.push(performance.now() - t0); // the first pays for pulling the image onto a node
  }
  return summarize(samples);
}

async function deploys(daemon, fnName, runs) {
  await daemon.deploy(fnName, { build: "none", files: RUNTIMES.node.files(" warm-up") });
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await daemon.deploy(fnName, { build: "none", files: RUNTIMES.node.files(` deploy ${i}`) });
    await callUntil200(daemon, fnName);
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

/** Requests per second with `clients` in a loop for `seconds`, one instance kept warm. */
async function warmRate(daemon, fnName, seconds, clients = 8) {
  await daemon.deploy(fnName, {
    build: "none",
    scale: { min: 1, max: 1 },
    files: RUNTIMES.node.files(" warm"),
  });
  await callUntil200(daemon, fnName);
  let ok = 0;
  let failed = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) {
        const res = await daemon.invoke(`/function/${fnName}`).catch(() => ({ status: 0 }));
        if (res.status === 200) ok++;
        else failed++;
      }
    }),
  );
  return { rps: ok / seconds, failed };
}

/** A function with 3 instances loses the worker node one of them runs on; time back to 3 on live nodes. */
async function nodeLoss(daemon, fnName, lab) {
  const docker = new Docker({ socketPath: lab.DOCKER_HOST.replace("unix://", "") });
  await daemon.deploy(fnName, { build: "none", scale: { min: 3 }, files: RUNTIMES.node.files(" survivor") });
  const runningTasks = async () => {
    const services = await docker.listServices({ filters: { label: [`funcd.function=${fnName}`] } });
    if (services.length === 0) return [];
    const tasks = await docker.listTasks({ filters: { service: services.map((s) => s.ID) } });
    return tasks.filter((t) => t.Status?.State === "running" && t.DesiredState === "running");
  };
  for (let i = 0; (await runningTasks()).length < 3; i++) {
    if (i > 600) throw new Error("the 3 instances did not come up");
    await sleep(100);
  }
  const nodes = new Map((await docker.listNodes()).map((n) => [n.ID, n.Description.Hostname]));
  const victimId = (await runningTasks()).map((t) => t.NodeID).find((id) => nodes.get(id) !== "lab-node-1");
  const victim = nodes.get(victimId) ?? "lab-node-3";
  let running = true;
  let ok = 0;
  let failed = 0;
  const traffic = Array.from({ length: 2 }, async () => {
    while (running) {
      const res = await daemon.invoke(`/function/${fnName}`).catch(() => ({ status: 0 }));
      if (res.status === 200) ok++;
      else failed++;
    }
  });
  const t0 = performance.now();
  execFileSync("bash", [LAB_SCRIPT, "kill-node", victim.replace("lab-node-", "")], { stdio: "ignore" });
  let backMs;
  for (;;) {
    const tasks = await runningTasks();
    const view = await daemon.describe(fnName);
    if (tasks.length === 3 && !tasks.some((t) => t.NodeID === victimId) && view.instances.length === 3) {
      backMs = performance.now() - t0;
      break;
    }
    if (performance.now() - t0 > 120_000) throw new Error("not back at full strength after 120 s");
    await sleep(100);
  }
  running = false;
  await Promise.all(traffic);
  execFileSync("bash", [LAB_SCRIPT, "start-node", victim.replace("lab-node-", "")], { stdio: "ignore" });
  return { backMs, ok, failed, victim };
}

export async function run({ quick, log }) {
  const runs = quick ? 2 : 5;
  const seconds = quick ? 3 : 10;
  const lab = labEnv();
  const cleanup = cleanupStack();
  const stamp = Date.now().toString(36);
  const rows = [];
  const summary = [];
  const raw = { runs, seconds };
  try {
    const docker = await startDaemon({
      env: { FUNCD_DRIVER: "docker", FUNCD_LOG_LEVEL: "error", FUNCD_POOL_SIZE: "0" },
      startTimeoutMs: 120_000,
    });
    cleanup.defer(docker.stop);
    const swarm = await startDaemon({
      env: {
        FUNCD_DRIVER: "swarm",
        FUNCD_LOG_LEVEL: "error",
        DOCKER_HOST: lab.DOCKER_HOST,
        FUNCD_REGISTRY: lab.FUNCD_REGISTRY,
      },
      startTimeoutMs: 120_000,
    });
    cleanup.defer(swarm.stop);

    log(`cold start from zero: ${runs} each`);
    const coldDocker = await coldStarts(docker, `sw-cold-d-${stamp}`, runs);
    const coldSwarm = await coldStarts(swarm, `sw-cold-s-${stamp}`, runs);
    raw.cold = { docker: coldDocker, swarm: coldSwarm };
    rows.push([
      "cold start from zero, p50",
      ms(coldDocker.median),
      ms(coldSwarm.median),
      ratio(coldSwarm.median, coldDocker.median),
    ]);
    rows.push([
      "cold start from zero, p99",
      ms(coldDocker.p99),
      ms(coldSwarm.p99),
      ratio(coldSwarm.p99, coldDocker.p99),
    ]);

    log(`buildless deploy → first response: ${runs} each`);
    const depDocker = await deploys(docker, `sw-dep-d-${stamp}`, runs);
    const depSwarm = await deploys(swarm, `sw-dep-s-${stamp}`, runs);
    raw.deploy = { docker: depDocker, swarm: depSwarm };
    rows.push([
      "buildless deploy → first response, p50",
      ms(depDocker.median),
      ms(depSwarm.median),
      ratio(depSwarm.median, depDocker.median),
    ]);

    log(`warm requests/s through the gateway: ${seconds} s each`);
    const warmDocker = await warmRate(docker, `sw-warm-d-${stamp}`, seconds);
    const warmSwarm = await warmRate(swarm, `sw-warm-s-${stamp}`, seconds);
    raw.warm = { docker: warmDocker, swarm: warmSwarm };
    rows.push([
      "warm req/s (8 clients, 1 instance)",
      warmDocker.rps.toFixed(0),
      warmSwarm.rps.toFixed(0),
      ratio(warmSwarm.rps, warmDocker.rps),
    ]);

    log("node loss: kill a worker running one of 3 instances");
    const loss = await nodeLoss(swarm, `sw-loss-${stamp}`, lab);
    raw.nodeLoss = loss;
    rows.push(["worker node lost → 3 instances on live nodes again", "–", ms(loss.backMs), "–"]);
    rows.push(["  requests during it (2 clients): ok / failed", "–", `${loss.ok} / ${loss.failed}`, "–"]);
    summary.push(
      {
        target: "swarm cold start from zero (p50) vs docker",
        measured: `${ms(coldSwarm.median)} vs ${ms(coldDocker.median)}`,
        met: undefined,
      },
      {
        target: "swarm warm req/s vs docker",
        measured: `${warmSwarm.rps.toFixed(0)} vs ${warmDocker.rps.toFixed(0)}`,
        met: undefined,
      },
      {
        target: "node loss: back at full strength",
        measured: `${ms(loss.backMs)}, ${loss.failed} failed requests`,
        met: undefined,
      },
    );
  } finally {
    await cleanup.run();
  }
  return {
    summary,
    sections: [
      {
        table: {
          header: ["case", "docker driver (baseline)", "swarm driver (3-node lab)", "swarm / docker"],
          rows,
        },
        notes: [
          `${runs} runs per latency row (cold starts: the first, which pulls the image onto a node, is left out); warm rate over ${seconds} s per driver; FUNCD_POOL_SIZE=0 on the docker daemon (the swarm driver has no pool).`,
          "The lab's nodes are network namespaces on this same 2-core machine: every request crosses a veth and a bridge, and the three engines share the cores with the daemon and the clients.",
          "Node loss: SIGKILL of every process of the node (scripts/swarm-lab.sh kill-node); the manager's dispatcher heartbeat is 1 s; the node is started again afterwards.",
        ],
      },
    ],
    raw,
  };
}
