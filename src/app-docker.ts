/**
 * The composition root's Docker part (app.ts calls it): the engine connection, the image builder, the
 * Docker driver when `driver: docker` (the swarm driver when `driver: swarm`), the record of which images serve, and the image garbage
 * collector. Kept apart so app.ts reads as the list of parts, and so a process-driver daemon pays for
 * none of this until someone builds an image (the engine is connected on first use).
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ImageUsage } from "./api/images.js";
import { ImageBuilder } from "./builder/image/image-builder.js";
import { collectImageGarbage, type ImageGcReport } from "./builder/image/image-gc.js";
import type { RuntimeRegistry } from "./builder/runtimes.js";
import type { Config } from "./config/config.js";
import { imageBuilderAdapter, type RevisionImages } from "./deploy/images.js";
import { containerUser } from "./drivers/docker/container-config.js";
import { DockerDriver } from "./drivers/docker/docker-driver.js";
import { connectEngine, type Engine } from "./drivers/docker/engine.js";
import type { Driver, InstanceSpec, LogSink } from "./drivers/driver.js";
import { loadTemplate } from "./drivers/process/template.js";
import type { SecretOwner } from "./drivers/secrets/files.js";
import { SwarmDriver } from "./drivers/swarm/index.js";
import type { Clock } from "./shared/clock.js";
import { messageOf } from "./shared/errors.js";
import type { Logger } from "./shared/logger.js";
import type { Store } from "./store/types.js";

/** How often unused images are looked for (and once at start-up). */
const IMAGE_GC_EVERY_MS = 3_600_000;

export interface DockerPartsOptions {
  config: Config;
  /** The engine, connected by the caller: given, the docker driver runs instances on it. */
  engine: Engine | undefined;
  store: Store;
  runtimes: RuntimeRegistry;
  clock: Clock;
  logger: Logger;
  logSink: LogSink;
}

export interface DockerParts {
  /** Connects on first call (and again after a failure); DOCKER_UNAVAILABLE when no engine answers. */
  engine: () => Promise<Engine>;
  builder: ImageBuilder;
  /** The docker driver, when an engine was given; else undefined. */
  driver: Driver | undefined;
  /** For the deployer: revision images, only with the docker driver (the process driver runs folders). */
  images: RevisionImages | undefined;
  /**
   * Records that an image serves: the deployer calls it when a revision switches to (or is restored
   * with) an image, and when a function goes (its images served until then); buildless starts record
   * their runtime image.
   */
  imageUsed: (tag: string) => void;
  /** Which revisions use which image (runtime images this daemon runs count, with no revision), and last use. */
  usage: ImageUsage;
  /** One garbage collection now; null when no engine was ever connected (nothing to collect from). */
  collectGarbage: () => Promise<ImageGcReport | null>;
  /**
   * Collects now and then every hour. Called once the functions are restored, so the first collection
   * sees the images they run.
   */
  startCollecting(): void;
  /** Stops the collector's timer. */
  close(): void;
  /**
   * The uid a container of `spec` runs as (its image's `USER`, or the fallback user for a root image):
   * the owner of its secret files.
   */
  secretOwner: (spec: InstanceSpec) => Promise<SecretOwner>;
}

/**
 * Builds the Docker parts. The caller connects the engine up front for the docker driver (so a daemon
 * without one fails at start-up with DOCKER_UNAVAILABLE, naming where it looked); without it, the engine
 * is connected when the first image is built.
 */
export function createDockerParts(options: DockerPartsOptions): DockerParts {
  const { config, store, clock, logger } = options;
  let connecting: Promise<Engine> | undefined = options.engine ? Promise.resolve(options.engine) : undefined;
  let connected = options.engine !== undefined;
  const engine = () => {
    if (!connecting) {
      const attempt = connectEngine();
      connecting = attempt;
      attempt.then(
        (found) => {
          connected = true;
          logger.info({ engine: found.endpoint }, "connected to the Docker engine");
        },
        () => {
          // Not remembered: the engine may answer on the next try.
          if (connecting === attempt) connecting = undefined;
        },
      );
    }
    return connecting;
  };
  const builder = new ImageBuilder({
    engine,
    logger: logger.child({ component: "image-builder" }),
    // Inside the data dir: the dependency cache is there too, so contexts can hard-link it.
    workDir: path.join(config.dataDir, "build"),
  });
  const imageUsed = (tag: string) => {
    try {
      store.images.touch(tag, clock.now());
    } catch (err) {
      logger.warn({ image: tag, err: messageOf(err) }, "could not record an image's use");
    }
  };

  // Runtime images buildless instances run: one per runtime, kept out of garbage collection while this
  // daemon has resolved them (they are not a revision's, so the store does not know them).
  const runtimeTags = new Map<string, Promise<string>>();
  const inUseRuntimeTags = new Set<string>();
  const runtimeImage = (runtime: string): Promise<string> => {
    let pending = runtimeTags.get(runtime);
    if (!pending) {
      pending = builder.runtimeImage(options.runtimes.get(runtime));
      runtimeTags.set(runtime, pending);
      pending.then(
        (tag) => inUseRuntimeTags.add(tag),
        () => runtimeTags.delete(runtime),
      );
    }
    return pending.then((tag) => {
      imageUsed(tag);
      return tag;
    });
  };

  const usage: ImageUsage = {
    inUse() {
      const users = store.revisions.images();
      // A runtime image serves buildless instances of any function; no revision names it.
      for (const tag of inUseRuntimeTags) if (!users.has(tag)) users.set(tag, []);
      return users;
    },
    lastUsed: (tag) => store.images.lastUsed(tag),
  };

  // Asked once per image (tags are content hashes, so their USER does not change).
  const imageUsers = new Map<string, Promise<string | undefined>>();
  const secretOwner = async (spec: InstanceSpec): Promise<SecretOwner> => {
    const image = spec.image ?? (await runtimeImage(spec.runtime));
    let user = imageUsers.get(image);
    if (!user) {
      user = engine().then(
        async ({ docker }) => (await docker.getImage(image).inspect()).Config?.User || undefined,
      );
      user.catch(() => imageUsers.delete(image));
      imageUsers.set(image, user);
    }
    const ids = /^(\d+)(?::(\d+))?$/.exec(containerUser(await user));
    return ids ? { uid: Number(ids[1]), gid: Number(ids[2] ?? ids[1]) } : "anyone";
  };

  let driver: Driver | undefined;
  if (options.engine && config.driver === "swarm") {
    driver = new SwarmDriver({
      engine: options.engine,
      daemonId: daemonId(config.dataDir),
      registry: config.registry ?? "",
      logSink: options.logSink,
      logger: logger.child({ component: "swarm-driver" }),
      runtimeImage,
      workDir: path.join(config.dataDir, "build", "swarm"),
      clock,
    });
  } else if (options.engine) {
    driver = new DockerDriver({
      engine: options.engine,
      daemonId: daemonId(config.dataDir),
      logSink: options.logSink,
      logger: logger.child({ component: "docker-driver" }),
      runtimeImage,
      networkName: config.dockerNetwork,
      clock,
      // An adopted container's output is followed from its last stored line: what it wrote while no
      // daemon ran reaches the log store too.
      lastLogAt: (functionName, instanceId) => store.logs.lastTimeOf(functionName, instanceId),
      // Generic containers for the warm pool (app.ts wraps the driver in PooledDriver when poolSize > 0).
      // Only buildless functions can be specialized into one: an image-mode function runs its own image.
      ...(config.poolSize > 0
        ? {
            pool: {
              slotsDir: path.join(config.dataDir, "slots"),
              runtime: async (name: string) => {
                const template = await loadTemplate(config.templatesDir, name);
                return { generic: template.generic, bootEnv: template.bootEnv };
              },
            },
          }
        : {}),
    });
  }

  const collectGarbage = async (): Promise<ImageGcReport | null> => {
    // A process-driver daemon that never built an image has nothing to collect, and must not connect.
    if (!connected) return null;
    const report = await collectImageGarbage({
      builder,
      inUse: new Set(usage.inUse().keys()),
      lastUsed: usage.lastUsed,
      retentionMs: config.imageRetention,
      now: () => clock.now(),
      logger: logger.child({ component: "image-gc" }),
    });
    for (const image of report.removed) if (image.tag) store.images.forget(image.tag);
    return report;
  };
  const collectQuietly = () => {
    collectGarbage().catch((err: unknown) => {
      // Housekeeping: a failure costs disk space, never a deploy.
      logger.warn({ err: messageOf(err) }, "image garbage collection failed");
    });
  };
  let timer: { cancel(): void } | undefined;

  return {
    engine,
    builder,
    driver,
    images: driver ? imageBuilderAdapter({ builder, engine, blobs: store.blobs }) : undefined,
    imageUsed,
    usage,
    collectGarbage,
    startCollecting() {
      if (timer) return;
      collectQuietly();
      timer = clock.setInterval(collectQuietly, IMAGE_GC_EVERY_MS);
    },
    close: () => timer?.cancel(),
    secretOwner,
  };
}

/**
 * This daemon's id on the engine (the `funcd.daemon` label): random once, then kept in the data dir, so
 * a restarted daemon knows its own containers and two daemons on one engine leave each other's alone.
 */
export function daemonId(dataDir: string): string {
  const file = path.join(dataDir, "daemon-id");
  if (existsSync(file)) {
    const id = readFileSync(file, "utf8").trim();
    if (/^[a-z0-9]{8,64}$/.test(id)) return id;
  }
  const id = randomBytes(8).toString("hex");
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}
