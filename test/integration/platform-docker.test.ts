/**
 * The platform conformance suite (test/helpers/platform-conformance.ts) on a daemon with the docker
 * driver, plus what only containers show: a deleted function leaves no container. Under CI=true a
 * missing engine fails the suite instead of skipping it.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { containersOf, probeDocker, removeImagesOf } from "../helpers/docker.js";
import { eventually, runPlatformConformance } from "../helpers/platform-conformance.js";

const { engine, skip } = await probeDocker();

runPlatformConformance({
  name: "docker driver",
  env: { FUNCD_DRIVER: "docker" },
  skip,
  timeoutMs: 120_000,
  async afterDelete(daemon, name) {
    if (!engine) throw new Error("no Docker engine");
    const daemonId = readFileSync(path.join(daemon.dataDir, "daemon-id"), "utf8").trim();
    await eventually(async () => expect(await containersOf(engine, daemonId, name)).toEqual([]));
  },
  async cleanup(names) {
    if (!engine) return;
    for (const name of names) await removeImagesOf(engine, name);
  },
});
