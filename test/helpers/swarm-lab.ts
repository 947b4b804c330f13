/**
 * Finding the swarm lab (`scripts/swarm-lab.sh up`) for the swarm suites: its env file
 * (`$FUNCD_SWARM_LAB/env`, default /run/funcd-swarm-lab/env) names the manager's `DOCKER_HOST` and the
 * registry. Under CI=true a lab that is not up fails the suite; elsewhere the suite skips, saying how to
 * bring it up.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connectEngine, type Engine } from "../../src/drivers/common/engine.js";

export const LAB_SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../scripts/swarm-lab.sh",
);

export interface SwarmLab {
  engine: Engine;
  dockerHost: string;
  registry: string;
  /** The lab's state folder (FUNCD_SWARM_LAB). */
  dir: string;
}

/** The lab, or why the suite skips (never under CI=true: there it throws). */
export async function probeSwarmLab(): Promise<{ lab?: SwarmLab; skip?: string }> {
  const isCI = process.env.CI === "true";
  const dir = process.env.FUNCD_SWARM_LAB || "/run/funcd-swarm-lab";
  const file = path.join(dir, "env");
  const fail = (why: string): { skip: string } => {
    const message = `the swarm lab is not up (${why}): run \`sudo scripts/swarm-lab.sh up\``;
    if (isCI) throw new Error(message);
    return { skip: message };
  };
  if (!existsSync(file)) return fail(`no ${file}`);
  const vars = Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line.includes("="))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
  const dockerHost = process.env.FUNCD_SWARM_DOCKER_HOST || vars.DOCKER_HOST;
  const registry = process.env.FUNCD_REGISTRY || vars.FUNCD_REGISTRY;
  if (!dockerHost || !registry) return fail(`${file} names no DOCKER_HOST or FUNCD_REGISTRY`);
  try {
    const engine = await connectEngine({ env: { DOCKER_HOST: dockerHost }, timeoutMs: 5_000 });
    const info = (await engine.docker.info()) as { Swarm?: { LocalNodeState?: string } };
    if (info.Swarm?.LocalNodeState !== "active") return fail(`the engine at ${dockerHost} is not in a swarm`);
    return { lab: { engine, dockerHost, registry, dir } };
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
}
