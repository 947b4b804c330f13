import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import Fastify, { type FastifyBaseLogger, LogController } from "fastify";
import { Pool } from "undici";
import { registerApi } from "./api/index.js";
import { claimDataDir } from "./app-data-dir.js";
import { createDockerParts } from "./app-docker.js";
import { createAdminServer, createGatewayServer, listenOn, originOf, urlOf } from "./app-listeners.js";
import { ArtifactCache } from "./builder/artifacts.js";
import { DependencyCache } from "./builder/dependencies.js";
import { RuntimeRegistry } from "./builder/runtimes.js";
import { adminListener, type Config, gatewayListener, PACKAGE_ROOT } from "./config/config.js";
import { dashboardRoutes } from "./dashboard/routes.js";
import { Applier } from "./deploy/apply.js";
import { Deployer } from "./deploy/deployer.js";
import type { FunctionSpec } from "./deploy/spec.js";
import { connectEngine, type Engine } from "./drivers/common/engine.js";
import type { Driver, InstanceAddress } from "./drivers/driver.js";
import { ProcessDriver } from "./drivers/process/index.js";
import { resolveInterpreter } from "./drivers/process/interpreter.js";
import { isRoot, uidFor } from "./drivers/process/sandbox.js";
import { SecretsDriver } from "./drivers/secrets/secrets-driver.js";
import { assertSwarmManager } from "./drivers/swarm/index.js";
import { Gateway } from "./gateway/gateway.js";
import { RouteTable } from "./gateway/routes.js";
import { ExecutionRecorder } from "./observability/executions.js";
import { LogHub } from "./observability/log-hub.js";
import { DaemonMetrics } from "./observability/metrics.js";
import { WorkerExecutionSink } from "./observability/worker-sink.js";
import { AsyncInvocations } from "./queue/index.js";
import { Fleet } from "./scaler/fleet.js";
import { PooledDriver, supportsPool } from "./scaler/pool.js";
import { type Clock, systemClock } from "./shared/clock.js";
import { FuncdError, isFuncdError, messageOf } from "./shared/errors.js";
import { listenOrExplain } from "./shared/listen.js";
import { createLogger, type Logger } from "./shared/logger.js";
import { openSqliteStore } from "./store/sqlite/index.js";
import type { Store } from "./store/types.js";

const execFileAsync = promisify(execFile);

export const VERSION: string = (
  JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }
).version;

export interface AppOverrides {
  logger?: Logger;
  clock?: Clock;
  driver?: Driver;
  store?: Store;
}

export interface App {
  readonly config: Config;
  /** The invocation gateway's listener (`port`). */
  readonly server: http.Server;
  /** The admin listener (`adminPort`): console, API, docs; never a function. */
  readonly adminServer: http.Server;
  readonly deployer: Deployer;
  readonly store: Store;
  readonly token: string;
  /** Where the token is kept, or null when it came from FUNCD_TOKEN. */
  readonly tokenFile: string | null;
  readonly logger: Logger;
  /** Listens on the configured host, `port` and `adminPort`; resolves with both base URLs. */
  listen(): Promise<{ url: string; adminUrl: string }>;
  /** Stops accepting, stops every instance, flushes records and closes the store. */
  close(): Promise<void>;
}

/**
 * The composition root: wires store, driver, fleet, gateway and API from a
 * config. Listening is separate (`listen`) so tests can build an app in-process.
 */
export async function createApp(given: Config, overrides: AppOverrides = {}): Promise<App> {
  // The docker and swarm drivers need an engine (swarm: a manager, and a registry): without one, fail
  // before anything is opened or started.
  const onEngine = (given.driver === "docker" || given.driver === "swarm") && !overrides.driver;
  const engine = onEngine ? await dockerEngine(given.driver) : undefined;
  if (engine && given.driver === "swarm") await checkSwarm(engine, given);
  // One daemon per data dir, reachable by sandboxed uids (src/app-data-dir.ts): before anything in it is
  // read or changed, so a refused start changes nothing.
  const dataDir = claimDataDir(given.dataDir, given.templatesDir);
  const config: Config =
    dataDir.templatesDir === given.templatesDir
      ? given
      : Object.freeze({ ...given, templatesDir: dataDir.templatesDir });
  const logger = overrides.logger ?? createLogger(config.logLevel);
  const clock = overrides.clock ?? systemClock;
  const { token, tokenFile } = ensureToken(config);
  const metrics = new DaemonMetrics();
  const store =
    overrides.store ??
    openSqliteStore(path.join(config.dataDir, "funcd.db"), {
      logsPerFunction: config.logsPerFunction,
      onLockWait: metrics.observeLockWait,
    });
  const logs = new LogHub(store.logs, clock, { logger });
  // With the SQLite store of the data dir, sync records are written on a thread of their own.
  const executionSink = overrides.store
    ? store.executions
    : new WorkerExecutionSink(path.join(config.dataDir, "funcd.db"), logger, {
        onLockWait: metrics.observeLockWait,
        onBusyRetry: (operation) => metrics.storeBusyRetries.inc({ operation }),
      });
  const recorder = new ExecutionRecorder(executionSink, clock, {
    logger,
    enabled: config.recordExecutions,
  });
  // Retention: executions are pruned by age and count per function so the store does not grow without bound.
  const pruneExecutions = () => {
    try {
      const removed = store.executions.prune(
        clock.now() - config.executionRetentionMs,
        config.executionsPerFunction,
      );
      if (removed > 0) logger.debug({ removed }, "pruned execution records");
    } catch (err) {
      logger.error({ err }, "pruning execution records failed");
    }
  };
  pruneExecutions();
  const pruner = clock.setInterval(pruneExecutions, 60_000);
  const runtimes = new RuntimeRegistry(config.templatesDir);
  void prepareTemplates(runtimes, logger);
  const artifacts = new ArtifactCache(path.join(config.dataDir, "artifacts"), store.blobs);
  const dependencies = new DependencyCache({
    root: path.join(config.dataDir, "deps"),
    cacheDir: path.join(config.dataDir, "cache"),
    blobs: store.blobs,
    logger: logger.child({ component: "dependencies" }),
    clock,
  });
  // ── docker: engine (connected now for the docker driver, on first build otherwise), image builder,
  // docker driver, image garbage collection (src/app-docker.ts).
  const docker = createDockerParts({
    config,
    engine,
    store,
    runtimes,
    clock,
    logger,
    logSink: logs.sink,
  });
  const baseDriver =
    overrides.driver ??
    docker.driver ??
    new ProcessDriver({
      templatesDir: config.templatesDir,
      runDir: path.join(config.dataDir, "run"),
      logSink: logs.sink,
      logger: logger.child({ component: "process-driver" }),
      sandbox: config.sandbox,
    });
  const systemLog = (functionName: string, revisionId: string, instanceId: string, text: string) =>
    logs.sink({ time: clock.now(), functionName, revisionId, instanceId, stream: "system", text });

  // ── secrets: delivered as read-only files on a tmpfs (and env vars) by a decorator around the driver,
  // inside the pool (which then never specializes a function with secrets).
  const onDocker = baseDriver.name === "docker";
  // The swarm driver delivers secrets itself, as Swarm secrets (a node cannot mount the daemon's tmpfs).
  const secretsDriver: Driver =
    baseDriver.name === "swarm"
      ? baseDriver
      : new SecretsDriver(baseDriver, {
          key: createHash("sha256").update(config.dataDir).digest("hex").slice(0, 12),
          logger: logger.child({ component: "secrets" }),
          // A root daemon's process instances run as their function's uid (sandbox.ts); containers as their image's user.
          owner: onDocker
            ? docker.secretOwner
            : (spec) =>
                isRoot() ? { uid: uidFor(spec.functionName), gid: uidFor(spec.functionName) } : undefined,
          traversable: !onDocker && isRoot(),
        });

  // ── warm pool ──────────────────────────────────────────────────────────────
  // A decorator around the driver: the fleet starts instances through it without knowing about the
  // pool. Off with FUNCD_POOL_SIZE=0, or for a driver that cannot run generic instances.
  const pool =
    config.poolSize > 0 && supportsPool(secretsDriver)
      ? new PooledDriver(secretsDriver, {
          size: config.poolSize,
          memoryMb: config.poolMemoryMb,
          clock,
          logger: logger.child({ component: "pool" }),
          metrics,
          systemLog,
        })
      : undefined;
  const driver: Driver = pool ?? secretsDriver;
  /** Sizes the pool for the runtimes functions use now; called by the deployer when that may change. */
  // Only functions the pool could serve count: with the docker driver an image-mode function runs its own
  // image, and a function with secrets always starts fresh — keeping generic instances for them is waste.
  const poolable = (spec: FunctionSpec) =>
    (spec.secrets?.length ?? 0) === 0 && (config.driver !== "docker" || spec.build === "none");
  const onFunctionsChanged = () =>
    pool?.setRuntimesInUse(
      store.functions
        .list()
        .filter((f) => poolable(f.spec))
        .map((f) => f.spec.runtime),
    );
  // ───────────────────────────────────────────────────────────────────────────

  const removed = await driver.reconcile();
  if (removed.removed > 0)
    logger.info({ removed: removed.removed }, "removed instances left by a previous run");

  const fleet = new Fleet({
    driver,
    clock,
    logger: logger.child({ component: "fleet" }),
    metrics,
    connect: connectInstance,
    systemLog,
    secrets: (names) => resolveSecrets(store, names),
    coldStartWaitMs: config.coldStartWaitMs,
    healthEveryMs: config.healthCheckIntervalMs,
    maxQueuedPerFunction: config.maxQueuedPerFunction,
    maxReservedMemoryMb: config.maxReservedMemoryMb,
    reservedElsewhereMb: () =>
      (pool?.stats() ?? []).reduce((mb, s) => mb + (s.starting + s.ready) * config.poolMemoryMb, 0),
  });
  const routes = new RouteTable();
  const deployer = new Deployer({
    store,
    fleet,
    routes,
    artifacts,
    dependencies,
    runtimes,
    clock,
    logger: logger.child({ component: "deployer" }),
    maxCodeBytes: config.maxCodeBytes,
    maxMemoryMb: config.maxMemoryMb,
    // Install output is part of the function's logs, under the pseudo-instance "build".
    buildLog: (functionName, revisionId, text) =>
      logs.sink({ time: clock.now(), functionName, revisionId, instanceId: "build", stream: "system", text }),
    onFunctionsChanged,
    ...(docker.images ? { images: docker.images } : {}),
    imageUsed: docker.imageUsed,
  });
  // ── async invocations (src/queue/): durable queue, workers that deliver through the gateway, callbacks.
  const asyncInvocations: AsyncInvocations = new AsyncInvocations({
    store,
    clock,
    logger: logger.child({ component: "queue" }),
    settings: config,
    deliver: (delivery) => gateway.deliver(delivery),
    timeoutOf: (name) => fleet.timeoutOf(name),
    metrics,
  });
  const gateway: Gateway = new Gateway({
    asyncIntake: asyncInvocations.intake,
    routes,
    fleet,
    metrics,
    recorder,
    clock,
    logger: logger.child({ component: "gateway" }),
    maxBodyBytes: config.maxBodyBytes,
  });

  let apiHandler: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => {};
  const fastify = Fastify({
    loggerInstance: logger.child({ component: "api" }) as FastifyBaseLogger,
    // Invocations are recorded as executions; per-request API log lines would only be noise.
    logController: new LogController({ disableRequestLogging: true }),
    // Code arrives base64 inside JSON: a third larger than the archive it carries.
    bodyLimit: Math.ceil(config.maxCodeBytes * 1.4) + 1024 * 1024,
    // Fastify's own server is the admin listener; the gateway's listener shares its handler for the
    // Bearer API (src/app-listeners.ts says which paths each origin serves, and why).
    serverFactory: (handler) => {
      apiHandler = handler;
      return createAdminServer(handler, (req) => originOf(req, gatewayServer, config.host));
    },
  });
  const adminServer = fastify.server;
  const gatewayServer: http.Server = createGatewayServer(
    { api: (req, res) => apiHandler(req, res), invoke: gateway.handle },
    (req) => originOf(req, adminServer, config.host),
  );
  await registerApi(fastify, {
    store,
    fleet,
    deployer,
    applier: new Applier({ store, deployer, runtimes }),
    logs,
    metrics,
    token,
    version: VERSION,
    async: {
      redrive: (name, ids) => asyncInvocations.redrive(name, ids),
      inFlight: (name) => asyncInvocations.dispatcher.inFlight(name),
    },
    secrets: {
      recycle: (name) => fleet.recycle(name),
      clock,
      logger: logger.child({ component: "secrets" }),
    },
    // `funcd build` and `funcd images`: with any driver (a process-driver daemon connects on first use).
    images: {
      builder: docker.builder,
      runtimes,
      usage: docker.usage,
      maxCodeBytes: config.maxCodeBytes,
      retentionMs: config.imageRetention,
      async prepareDependencies({ functionName, template, files, onProgress }) {
        // The same cache (and key) a deploy uses: the files go to the blob store the install reads from.
        const manifest = store.transaction(() =>
          files.map((f) => ({
            path: f.path,
            hash: store.blobs.put(f.data),
            size: f.data.length,
            mode: f.mode,
          })),
        );
        const plan = dependencies.plan(template, manifest);
        if (!plan) return null;
        const ensured = await dependencies.ensure(plan, {
          functionName,
          onProgress,
          onLine: (line) => onProgress(`installing dependencies: ${line}`),
        });
        return { dir: ensured.dir, key: ensured.key, cached: ensured.cached };
      },
    },
  });
  await fastify.register(
    dashboardRoutes({ gatewayOrigin: (req) => originOf(req, gatewayServer, config.host) }),
  );
  await fastify.ready();
  await deployer.restore();
  // Instances a previous run left (docker containers the driver adopted) that no restored revision took.
  const stale = await fleet.stopUnclaimedAdopted();
  if (stale > 0) logger.info({ stopped: stale }, "stopped instances of the previous run no revision claims");
  docker.startCollecting();
  // After restore: invocations left queued or running by a previous run need their functions' revisions.
  asyncInvocations.start();

  let closed = false;
  return {
    config,
    server: gatewayServer,
    adminServer,
    deployer,
    store,
    token,
    tokenFile,
    logger,
    async listen() {
      await listenOrExplain(gatewayListener(config), () => listenOn(gatewayServer, config.port, config.host));
      try {
        await listenOrExplain(adminListener(config), () =>
          fastify.listen({ port: config.adminPort, host: config.host }),
        );
      } catch (err) {
        gatewayServer.close();
        throw err;
      }
      const listening = { url: urlOf(gatewayServer), adminUrl: urlOf(adminServer) };
      dataDir.announce({ gateway: listening.url, admin: listening.adminUrl });
      logger.info(listening, "listening");
      return listening;
    },
    async close() {
      if (closed) return;
      closed = true;
      gatewayServer.closeIdleConnections?.();
      adminServer.closeIdleConnections?.();
      const gatewayClosed = new Promise<void>((resolve) => {
        if (!gatewayServer.listening) return resolve();
        gatewayServer.close(() => resolve());
      });
      const closing = fastify.close();
      // Before the fleet goes: deliveries in flight get a moment to finish and be recorded.
      await asyncInvocations.close();
      dependencies.dispose();
      await fleet.dispose();
      await driver.dispose();
      gatewayServer.closeAllConnections?.();
      adminServer.closeAllConnections?.();
      await closing;
      await gatewayClosed;
      pruner.cancel();
      docker.close();
      await recorder.close();
      logs.close();
      store.close();
      dataDir.release();
    },
  };
}

/** The values of the named secrets, opened from the store; `SECRET_NOT_FOUND` for a missing one. */
function resolveSecrets(store: Store, names: readonly string[]): Record<string, Buffer> {
  const values: Record<string, Buffer> = {};
  for (const name of names) {
    const value = store.secrets.value(name);
    if (value === undefined) {
      throw new FuncdError("SECRET_NOT_FOUND", `Secret "${name}" does not exist (funcd secret set ${name})`);
    }
    values[name] = value;
  }
  return values;
}

/** The engine the docker (or swarm) driver runs on; DOCKER_UNAVAILABLE says what asked for it and what else to do. */
async function dockerEngine(driver: Config["driver"]) {
  try {
    return await connectEngine();
  } catch (err) {
    if (!isFuncdError(err, "DOCKER_UNAVAILABLE")) throw err;
    const why = err.message.replace(/^No Docker engine answers: /, "");
    throw new FuncdError(
      "DOCKER_UNAVAILABLE",
      `The ${driver} driver (FUNCD_DRIVER=${driver}) needs a Docker engine: ${why}; or run with --driver process`,
      { cause: err, extra: err.extra },
    );
  }
}

/** The swarm driver's needs: a registry setting, and an engine that manages a swarm (SWARM_UNAVAILABLE). */
async function checkSwarm(engine: Engine, config: Config): Promise<void> {
  if (config.registry === undefined) {
    throw new FuncdError(
      "CONFIG_INVALID",
      "The swarm driver needs a registry every node can pull from: set FUNCD_REGISTRY=host:port (or --registry, or `registry:` in the config file); scripts/swarm-lab.sh up prints one",
    );
  }
  await assertSwarmManager(engine);
}

/** One keep-alive pool per instance; unix socket or TCP. */
function connectInstance(address: InstanceAddress, connections: number): Pool {
  const options = { connections, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000, pipelining: 1 };
  if ("socketPath" in address)
    return new Pool("http://localhost", { ...options, socketPath: address.socketPath });
  return new Pool(`http://${address.host}:${address.port}`, options);
}

/** The admin token: FUNCD_TOKEN when set, else a random one kept in `<dataDir>/token` (0600). */
function ensureToken(config: Config): { token: string; tokenFile: string | null } {
  if (config.token) return { token: config.token, tokenFile: null };
  const file = path.join(config.dataDir, "token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (token.length >= 16) return { token, tokenFile: file };
  }
  const token = randomBytes(24).toString("base64url");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token, tokenFile: file };
}

/**
 * Runs each template's `prepare` command once (Python compiles its runtime's bytecode, which the
 * read-only sandbox could never cache). Best effort, in the background: a failure costs start-up
 * speed, not correctness.
 */
async function prepareTemplates(runtimes: RuntimeRegistry, logger: Logger): Promise<void> {
  for (const template of runtimes.templates()) {
    const [program, ...args] = template.prepare ?? [];
    if (!program) continue;
    try {
      const interpreter = await resolveInterpreter(program);
      await execFileAsync(interpreter.path, args, {
        cwd: template.dir,
        timeout: 60_000,
        env: { PATH: "/usr/bin:/bin" },
      });
    } catch (err) {
      logger.warn(
        { runtime: template.runtime, err: messageOf(err) },
        "preparing the runtime template failed",
      );
    }
  }
}
