/**
 * The Engine API calls the image builder makes besides building: image lookups, following a progress
 * stream, making sure a base image is there (pulling it when allowed), and the engine's errors as
 * messages a person can act on.
 */
import type Docker from "dockerode";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { type EngineEvent, EngineOutput } from "./progress.js";

/** Default limit of pulling a missing base image. */
export const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;

export interface EnsureBaseOptions {
  /** Let the engine pull a missing image; without it a missing base fails at once. */
  pull: boolean;
  pullTimeoutMs?: number | undefined;
  onProgress?: ((line: string) => void) | undefined;
  logger: Logger;
}

/**
 * The base image's id; pulls it when it is missing (and pulling is allowed). Checked before a build
 * because the classic builder would pull on its own, with an error that does not say what to do where
 * no registry can be reached. BASE_IMAGE_MISSING names the image and how to get it.
 */
export async function ensureBaseImage(
  docker: Docker,
  base: string,
  options: EnsureBaseOptions,
): Promise<string> {
  const found = await inspectOrNull(docker, base);
  if (found) return found.Id;
  const missing = (why: string) =>
    new FuncdError(
      "BASE_IMAGE_MISSING",
      `Base image "${base}" is not on the Docker engine and ${why}: run scripts/seed-base-images.sh or docker pull ${base}`,
      { extra: { image: base } },
    );
  if (!options.pull) throw missing("pulling is turned off");
  options.onProgress?.(`pulling base image ${base}`);
  const output = new EngineOutput(options.onProgress, 200);
  const timeoutMs = options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
  const abort = AbortSignal.timeout(timeoutMs);
  try {
    const stream = (await docker.pull(base, { abortSignal: abort })) as NodeJS.ReadableStream;
    await follow(docker, stream, output);
  } catch (err) {
    throw missing(
      `cannot be pulled (${abort.aborted ? `no answer within ${Math.round(timeoutMs / 1000)} s` : engineMessage(err)})`,
    );
  }
  if (output.error !== undefined) throw missing(`cannot be pulled (${output.error})`);
  const pulled = await inspectOrNull(docker, base);
  if (!pulled) throw missing("the pull did not produce it");
  options.logger.info({ image: base }, "pulled base image");
  return pulled.Id;
}

/** Follows an engine progress stream to its end, feeding `output`. */
export function follow(docker: Docker, stream: NodeJS.ReadableStream, output: EngineOutput): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null) => (err ? reject(err) : resolve()),
      (event: EngineEvent) => output.event(event),
    );
  });
}

export async function inspectOrNull(docker: Docker, name: string): Promise<Docker.ImageInspectInfo | null> {
  try {
    return await docker.getImage(name).inspect();
  } catch (err) {
    if (statusOf(err) === 404) return null;
    throw engineError(err, `inspecting image "${name}"`);
  }
}

export function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/** The engine's own message (its JSON body's `message`) rather than dockerode's "(HTTP code 409) …" prefix. */
export function engineMessage(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === "string") return json.message.trim();
  return messageOf(err)
    .replace(/^\(HTTP code \d+\) [^-]*- /, "")
    .trim();
}

export function engineError(err: unknown, doing: string): FuncdError {
  if (err instanceof FuncdError) return err;
  return new FuncdError(
    "DOCKER_UNAVAILABLE",
    `The Docker engine failed while ${doing}: ${engineMessage(err)}`,
    {
      cause: err,
    },
  );
}
