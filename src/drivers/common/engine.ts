/**
 * Finding and talking to a Docker engine. A thin layer over dockerode: the image builder and the Docker
 * driver both take an `Engine` from `connectEngine()`, so discovery and the "no engine" error live in one
 * place.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { FuncdError, messageOf } from "../../shared/errors.js";

export interface Engine {
  readonly docker: Docker;
  /** Where the engine was found, for messages: `unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`. */
  readonly endpoint: string;
}

/** Labels on everything funcd creates (images, containers, networks), so it never touches anything else. */
export const LABELS = {
  managed: "funcd.managed",
  daemon: "funcd.daemon",
  function: "funcd.function",
  revision: "funcd.revision",
  instance: "funcd.instance",
  kind: "funcd.kind",
  runtime: "funcd.runtime",
} as const;

/**
 * Where to look for an engine when `DOCKER_HOST` is not set, in order: Docker's default socket, rootless
 * Docker, Docker Desktop's per-user socket, then Podman's Docker-compatible sockets (rootless, then root).
 */
export function candidateSockets(env: NodeJS.ProcessEnv = process.env): string[] {
  const runtimeDir = env.XDG_RUNTIME_DIR;
  const home = env.HOME ?? homedir();
  return [
    "/var/run/docker.sock",
    ...(runtimeDir ? [path.join(runtimeDir, "docker.sock")] : []),
    path.join(home, ".docker/run/docker.sock"),
    ...(runtimeDir ? [path.join(runtimeDir, "podman/podman.sock")] : []),
    "/run/podman/podman.sock",
  ];
}

/**
 * Connects to the first engine that answers a ping: `DOCKER_HOST` when it is set (and only it — a user who
 * names an engine means that one), else the first of `candidateSockets()` that exists and answers.
 * Rejects with `DOCKER_UNAVAILABLE` naming every place it tried.
 */
export async function connectEngine(
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Engine> {
  const env = options.env ?? process.env;
  const timeout = options.timeoutMs ?? 5_000;
  const tried: string[] = [];
  const attempts: { endpoint: string; make: () => Docker }[] = env.DOCKER_HOST
    ? [{ endpoint: env.DOCKER_HOST, make: () => new Docker(modemFromDockerHost(env.DOCKER_HOST as string)) }]
    : candidateSockets(env)
        .filter((socket) => existsSync(socket))
        .map((socket) => ({ endpoint: `unix://${socket}`, make: () => new Docker({ socketPath: socket }) }));
  if (attempts.length === 0) tried.push(...candidateSockets(env).map((s) => `unix://${s} (no such socket)`));
  for (const attempt of attempts) {
    const docker = attempt.make();
    try {
      await withTimeout(docker.ping(), timeout);
      return { docker, endpoint: attempt.endpoint };
    } catch (err) {
      tried.push(`${attempt.endpoint} (${messageOf(err)})`);
    }
  }
  throw new FuncdError(
    "DOCKER_UNAVAILABLE",
    `No Docker engine answers: tried ${tried.join(", ")}. Start one (e.g. \`apt-get install -y docker.io && dockerd &\`) or set DOCKER_HOST`,
    { extra: { tried } },
  );
}

/** dockerode options for a `DOCKER_HOST` value (`unix:///path`, `tcp://host:port`, `http://…`). */
export function modemFromDockerHost(value: string): Docker.DockerOptions {
  if (value.startsWith("unix://")) return { socketPath: value.slice("unix://".length) };
  if (value.startsWith("/")) return { socketPath: value };
  const url = new URL(value.replace(/^tcp:/, "http:"));
  return { protocol: "http", host: url.hostname, port: Number(url.port || 2375) };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
