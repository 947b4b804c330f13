/**
 * Whether Docker tests can run here: an engine answers and the base images the templates build on are
 * seeded. Without them a suite is skipped with the reason — except under CI=true, where it must fail, so
 * `skip` is never set there and the tests run into the missing engine.
 */
import { connectEngine, type Engine, LABELS } from "../../src/drivers/docker/engine.js";

export const isCI = process.env.CI === "true";

/** The base images of templates/*\/template.yaml (`image.base`), which scripts/seed-base-images.sh makes. */
export const BASE_IMAGES = ["node:20-slim", "python:3.11-slim"] as const;

export interface DockerProbe {
  engine: Engine | undefined;
  /** Why Docker tests are skipped; undefined when they run (always under CI). */
  skip: string | undefined;
}

export async function probeDocker(needs: readonly string[] = ["node:20-slim"]): Promise<DockerProbe> {
  let engine: Engine | undefined;
  try {
    engine = await connectEngine({ timeoutMs: 3_000 });
  } catch (err) {
    return { engine: undefined, skip: isCI ? undefined : `no Docker engine: ${(err as Error).message}` };
  }
  const missing: string[] = [];
  for (const image of needs) {
    const found = await engine.docker
      .getImage(image)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    if (!found) missing.push(image);
  }
  const skip =
    missing.length > 0 && !isCI
      ? `base image ${missing.join(", ")} missing (run scripts/seed-base-images.sh)`
      : undefined;
  return { engine, skip };
}

/** The containers a daemon (by its data dir's daemon id) runs for a function, as the engine lists them. */
export async function containersOf(
  engine: Engine,
  daemonId: string,
  functionName?: string,
): Promise<{ id: string; state: string; image: string }[]> {
  const labels = [`${LABELS.managed}=true`, `${LABELS.daemon}=${daemonId}`];
  if (functionName) labels.push(`${LABELS.function}=${functionName}`);
  const list = await engine.docker.listContainers({ all: true, filters: { label: labels } });
  return list.map((c) => ({ id: c.Id, state: c.State, image: c.Image }));
}

/** funcd's function images of one function on the engine, by tag. */
export async function imagesOf(engine: Engine, functionName: string): Promise<string[]> {
  const list = await engine.docker.listImages({
    filters: { label: [`${LABELS.managed}=true`, `${LABELS.function}=${functionName}`] },
  });
  return list.flatMap((i) => i.RepoTags ?? []).filter((t) => t !== "<none>:<none>");
}

/** Removes a function's images (test clean-up; containers using them must be gone first). */
export async function removeImagesOf(engine: Engine, functionName: string): Promise<void> {
  for (const tag of await imagesOf(engine, functionName)) {
    await engine.docker
      .getImage(tag)
      .remove({ force: true })
      .catch(() => undefined);
  }
}
