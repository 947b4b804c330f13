/**
 * The platform conformance suite (test/helpers/platform-conformance.ts) on a daemon with the swarm driver,
 * against the 3-node lab of `scripts/swarm-lab.sh up` (manager's DOCKER_HOST, the lab's registry), plus
 * what only the swarm shows: a deleted function leaves no service, and a daemon on an engine that is not a
 * swarm manager refuses to start, saying `docker swarm init`. Under CI=true a lab that is not up fails.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { LABELS } from "../../src/drivers/common/engine.js";
import { cleanEnv, ROOT } from "../helpers/daemon.js";
import { eventually, runPlatformConformance } from "../helpers/platform-conformance.js";
import { probeSwarmLab } from "../helpers/swarm-lab.js";

const { lab, skip } = await probeSwarmLab();

runPlatformConformance({
  name: "swarm driver (3-node lab)",
  env: lab ? { FUNCD_DRIVER: "swarm", DOCKER_HOST: lab.dockerHost, FUNCD_REGISTRY: lab.registry } : {},
  skip,
  timeoutMs: 180_000,
  async afterDelete(_daemon, name) {
    if (!lab) throw new Error("no swarm lab");
    await eventually(async () => {
      const services = (await lab.engine.docker.listServices({
        filters: { label: [`${LABELS.function}=${name}`] },
      })) as unknown[];
      expect(services).toEqual([]);
    }, 30_000);
  },
});

// Reads the host engine's info only: it is never made a swarm (other suites share it).
it.skipIf(!existsSync("/var/run/docker.sock"))(
  "a swarm-driver daemon on an engine that is not a swarm manager refuses to start, saying docker swarm init",
  () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "funcd-noswarm-"));
    try {
      const result = spawnSync(process.execPath, [path.join(ROOT, "bin/funcd.js"), "server", "--port", "0"], {
        env: cleanEnv({
          FUNCD_DRIVER: "swarm",
          FUNCD_REGISTRY: "127.0.0.1:5000",
          FUNCD_DATA_DIR: dataDir,
          DOCKER_HOST: "unix:///var/run/docker.sock",
        }),
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain("docker swarm init");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
);
