import type { ArtifactCache } from "../builder/artifacts.js";
import { type CodeFile, checkHandlerFile, readCode } from "../builder/code.js";
import type { DependencyCache } from "../builder/dependencies.js";
import { fetchGitSource } from "../builder/git.js";
import type { RuntimeRegistry, TemplateMeta } from "../builder/runtimes.js";
import type { RouteTable } from "../gateway/routes.js";
import type { Fleet, LiveInstance } from "../scaler/fleet.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { FunctionRecord, ManifestEntry, RevisionRecord, Store } from "../store/types.js";
import { type BuildTest, testInstance } from "./build-tests.js";
import type { RevisionImages } from "./images.js";
import { type Prepared, RevisionPreparer } from "./prepare.js";
import { revisionId, runFields } from "./revision-id.js";
import type { DeployRequest, FunctionSpec } from "./spec.js";

export { revisionId } from "./revision-id.js";

export interface DeployResult {
  function: FunctionRecord;
  revision: RevisionRecord;
  /** False when the deploy changed nothing (same code and spec as what serves). */
  changed: boolean;
  /** The revision's dependency install, and whether this deploy found it installed already; null when none. */
  dependencies: DependencyUse | null;
}

export interface DependencyUse {
  key: string;
  cached: boolean;
}

export type Progress = (message: string) => void;

/** A prepared revision with an instance that loaded it and passed its tests. */
interface Proven extends Prepared {
  warm: LiveInstance;
}

export interface DeployerOptions {
  store: Store;
  fleet: Fleet;
  routes: RouteTable;
  artifacts: ArtifactCache;
  dependencies: DependencyCache;
  runtimes: RuntimeRegistry;
  clock: Clock;
  logger: Logger;
  maxCodeBytes: number;
  maxMemoryMb: number;
  /**
   * Where build output goes besides the deploy's progress: dependency installs print here, as the
   * function's logs. Takes the function and revision because the deployer builds for many functions.
   */
  buildLog?: (functionName: string, revisionId: string, text: string) => void;
  /**
   * The docker driver in image mode: builds each revision's image. Absent with the process driver, where
   * revisions run from their artifact folder (as they do with `build: none` on docker).
   */
  images?: RevisionImages;
  /** Called with an image's tag when a revision that runs it starts serving (deploy, rollback, restore). */
  imageUsed?: (tag: string) => void;
  /**
   * Called after the set of functions (or a function's runtime) may have changed: after restore, after a
   * deploy or rollback switched a revision, after a delete. The warm pool sizes itself from it.
   */
  onFunctionsChanged?: () => void;
}

/**
 * The deploy path: validate → store code by hash → prepare the artifact →
 * prove the handler loads on a fresh instance → switch the route to the new
 * revision and drain the old one. Any failure before the switch leaves the
 * previous revision serving, untouched.
 */
export class Deployer {
  readonly #o: DeployerOptions;
  /** One deploy per function at a time; others queue behind it. */
  readonly #locks = new Map<string, Promise<unknown>>();

  readonly #preparer: RevisionPreparer;

  constructor(options: DeployerOptions) {
    this.#o = options;
    this.#preparer = new RevisionPreparer(options);
  }

  /** Rebuilds the route table and the fleet from the store (daemon start-up). */
  async restore(): Promise<void> {
    const functions = this.#o.store.functions.list();
    this.#o.routes.rebuild(functions.map((f) => ({ name: f.name, routes: f.spec.routes })));
    for (const fn of functions) {
      this.#o.fleet.upsert(fn.name, fn.spec);
      const revision = fn.activeRevision ? this.#o.store.revisions.get(fn.activeRevision) : undefined;
      if (!revision) continue;
      try {
        const { servable, revision: prepared } = await this.#preparer.prepare(revision, fn.spec, () => {});
        // The image was missing and built again (or the driver changed): remember what runs now.
        if (prepared.image !== revision.image) this.#o.store.revisions.put(prepared);
        this.#o.fleet.activate(fn.name, fn.spec, servable);
        if (prepared.image) this.#o.imageUsed?.(prepared.image);
      } catch (err) {
        this.#o.logger.error({ function: fn.name, err: messageOf(err) }, "cannot restore function");
      }
    }
    this.#o.onFunctionsChanged?.();
    await this.#collectDependencies();
  }

  deploy(
    request: DeployRequest,
    options: { onProgress?: Progress; mustCreate?: boolean } = {},
  ): Promise<DeployResult> {
    return this.#serialized(request.name, () =>
      this.#deploy(request, options.onProgress ?? (() => {}), options.mustCreate),
    );
  }

  /**
   * Deploys a git-sourced function again from its ref (`funcd sync`): a moved branch is a new revision,
   * an unmoved one changes nothing; a fetch that fails leaves the serving revision alone.
   */
  sync(name: string, onProgress?: Progress): Promise<DeployResult> {
    const current = this.#require(name);
    if (!current.spec.source?.git) {
      throw new FuncdError(
        "BAD_REQUEST",
        `Function "${name}" has no git source to sync; deploy it with source.git (or a Kyma gitRepository)`,
      );
    }
    const { commit: _commit, ...git } = current.spec.source.git;
    return this.deploy(
      { ...current.spec, source: { git } } as DeployRequest,
      onProgress ? { onProgress } : {},
    );
  }

  rollback(name: string, to?: string): Promise<DeployResult> {
    return this.#serialized(name, () => this.#rollback(name, to));
  }

  /** Applies routes/scale/label changes that need no new revision. */
  updateSettings(
    name: string,
    patch: Partial<Pick<FunctionSpec, "routes" | "labels" | "annotations">> & {
      /** Only the settings that change (milliseconds for durations); the others stay as stored. */
      scale?: Partial<FunctionSpec["scale"]>;
    },
  ): FunctionRecord {
    const current = this.#require(name);
    const spec: FunctionSpec = {
      ...current.spec,
      ...patch,
      scale: { ...current.spec.scale, ...patch.scale },
    };
    if (spec.scale.min > spec.scale.max) {
      throw new FuncdError(
        "BAD_REQUEST",
        `scale.min (${spec.scale.min}) is larger than scale.max (${spec.scale.max})`,
      );
    }
    this.#checkRoutes(name, spec.routes);
    const record = { ...current, spec, updatedAt: this.#o.clock.now() };
    this.#o.store.functions.put(record);
    this.#rebuildRoutes();
    this.#o.fleet.upsert(name, spec);
    return record;
  }

  remove(name: string): Promise<void> {
    return this.#serialized(name, async () => {
      const current = this.#require(name);
      const revisions = this.#o.store.revisions.listFor(name);
      // Its image served until now: the image collector's retention counts from here.
      const image = revisions.find((r) => r.id === current.activeRevision)?.image;
      if (image) this.#o.imageUsed?.(image);
      this.#o.store.transaction(() => {
        this.#o.store.functions.delete(name);
        this.#o.store.revisions.deleteFor(name);
        this.#o.store.logs.deleteFor(name);
        this.#o.store.executions.deleteFor(name);
        // Its queued async invocations and dead letters go too; in-flight deliveries find nothing to update.
        this.#o.store.queue.dropFor(name);
      });
      this.#rebuildRoutes();
      await this.#o.fleet.remove(name);
      this.#o.onFunctionsChanged?.();
      for (const revision of revisions) await this.#o.artifacts.remove(revision.id);
      this.#o.store.blobs.collectGarbage();
      await this.#collectDependencies();
    });
  }

  // ── internals ────────────────────────────────────────────────────────────

  async #serialized<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.#locks.set(name, tail);
    try {
      return await next;
    } finally {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }

  #require(name: string): FunctionRecord {
    const record = this.#o.store.functions.get(name);
    if (!record) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
    return record;
  }

  async #deploy(request: DeployRequest, progress: Progress, mustCreate = false): Promise<DeployResult> {
    // The request was parsed by the schema at the edge (API or stack file); durations are already ms here.
    const { files, archive, ...requested } = request;
    // Aliases (python, python312, …) are stored under the template's own runtime name, so every part
    // of funcd — drivers included — sees one name per runtime.
    let spec: FunctionSpec = { ...requested, runtime: this.#o.runtimes.get(requested.runtime).runtime };
    const name = spec.name;
    const existing = this.#o.store.functions.get(name);
    if (mustCreate && existing) {
      throw new FuncdError(
        "FUNCTION_EXISTS",
        `Function "${name}" already exists; use PUT /api/v1/functions/${name} to update it`,
      );
    }
    const template = this.#o.runtimes.get(spec.runtime);
    if (spec.memory > this.#o.maxMemoryMb) {
      throw new FuncdError(
        "BAD_REQUEST",
        `Function "${name}" asks for ${spec.memory} MiB; this daemon allows at most ${this.#o.maxMemoryMb} MiB`,
      );
    }
    if (spec.scale.min > spec.scale.max) {
      throw new FuncdError(
        "BAD_REQUEST",
        `scale.min (${spec.scale.min}) is larger than scale.max (${spec.scale.max})`,
      );
    }
    this.#checkRoutes(name, spec.routes);
    this.#checkSecrets(name, spec);

    progress("reading code");
    let manifest: ManifestEntry[];
    let code: CodeFile[] | undefined;
    if (files !== undefined || archive !== undefined) {
      code = await readCode({ files, archive }, { maxBytes: this.#o.maxCodeBytes });
    } else if (spec.source?.git) {
      const fetched = await this.#fetchGit(name, spec.source.git, progress);
      code = fetched.files;
      spec = { ...spec, source: { git: { ...spec.source.git, commit: fetched.commit } } };
    }
    if (code !== undefined) {
      checkHandlerFile(
        spec.handler,
        code.map((f) => f.path),
        template,
        this.#o.runtimes.templates(),
      );
      const fetched = code;
      manifest = this.#o.store.transaction(() =>
        fetched.map((f) => ({
          path: f.path,
          hash: this.#o.store.blobs.put(f.data),
          size: f.data.length,
          mode: f.mode,
        })),
      );
    } else {
      const active = existing?.activeRevision
        ? this.#o.store.revisions.get(existing.activeRevision)
        : undefined;
      if (!active)
        throw new FuncdError("BAD_REQUEST", `Deploying "${name}" needs code: send "files" or "archive"`);
      manifest = active.files;
      checkHandlerFile(
        spec.handler,
        manifest.map((f) => f.path),
        template,
        this.#o.runtimes.templates(),
      );
    }

    const depsKey = this.#planDependencies(name, template, manifest)?.key ?? null;
    const id = revisionId(name, spec, manifest, depsKey);
    if (existing && existing.activeRevision === id) {
      const active = this.#o.store.revisions.get(id);
      if (active) {
        if (depsKey) progress("dependencies unchanged (cache hit)");
        if (active.image && this.#o.images && spec.build !== "none") {
          progress(`image ${active.image} unchanged (cache hit)`);
        }
        const dependencies = depsKey ? { key: depsKey, cached: true } : null;
        const changed = JSON.stringify(existing.spec) !== JSON.stringify(spec);
        if (!changed) return { function: existing, revision: active, changed: false, dependencies };
        const newTests = spec.tests ?? [];
        if (newTests.length === 0 || sameJson(newTests, existing.spec.tests ?? [])) {
          const record = this.updateSettings(name, spec);
          return { function: record, revision: active, changed: true, dependencies };
        }
        // Same code, new tests: they must pass against the revision before the spec holding them is kept.
        const proven = await this.#prove(active, spec, progress, { tests: newTests });
        return this.#switchTo(name, spec, proven.revision, existing, proven, progress);
      }
    }

    const known = this.#o.store.revisions.get(id);
    const revision: RevisionRecord = {
      id,
      functionName: name,
      number: known?.number ?? this.#o.store.revisions.nextNumber(name),
      spec,
      files: manifest,
      status: "ready",
      error: null,
      createdAt: known?.createdAt ?? this.#o.clock.now(),
      depsKey,
      // The same content deployed before (a revert): its image, if still there, is what runs again.
      ...(known?.image ? { image: known.image, buildLog: known.buildLog ?? null } : {}),
    };
    const proven = await this.#prove(revision, spec, progress, {
      tests: spec.tests ?? [],
      keepFailure: existing !== undefined,
    });
    return this.#switchTo(name, spec, proven.revision, existing, proven, progress);
  }

  async #rollback(name: string, to?: string): Promise<DeployResult> {
    const current = this.#require(name);
    const revisions = this.#o.store.revisions.listFor(name);
    let target: RevisionRecord | undefined;
    if (to) {
      target = revisions.find(
        (r) => r.id === to || r.id.startsWith(to) || String(r.number) === to.replace(/^#/, ""),
      );
      if (!target) throw new FuncdError("REVISION_NOT_FOUND", `Function "${name}" has no revision "${to}"`);
      if (target.status !== "ready") {
        throw new FuncdError(
          "BAD_REQUEST",
          `Revision #${target.number} of "${name}" failed to deploy; it cannot serve`,
        );
      }
    } else {
      const active = revisions.find((r) => r.id === current.activeRevision);
      target = revisions.find(
        (r) =>
          r.status === "ready" && r.id !== current.activeRevision && (!active || r.number < active.number),
      );
      if (!target)
        throw new FuncdError(
          "REVISION_NOT_FOUND",
          `Function "${name}" has no earlier ready revision to roll back to`,
        );
    }
    if (target.id === current.activeRevision) {
      const dependencies = target.depsKey ? { key: target.depsKey, cached: true } : null;
      return { function: current, revision: target, changed: false, dependencies };
    }
    const spec: FunctionSpec = { ...current.spec, ...runFields(target.spec) };
    this.#checkSecrets(name, spec);
    // No build-time tests: the revision passed them when it was deployed.
    const proven = await this.#prove(target, spec, () => {}, { keepFailure: true });
    return this.#switchTo(name, spec, proven.revision, current, proven, () => {});
  }

  /**
   * Installs the revision's dependencies (or finds them cached), prepares its artifact (and, with the
   * docker driver, its image), starts one instance of it and runs the spec's build-time tests against
   * that instance; a failure is recorded on the revision (unless it is the one serving) and thrown, and
   * nothing else changed.
   */
  async #prove(
    revision: RevisionRecord,
    spec: FunctionSpec,
    progress: Progress,
    options: { keepFailure?: boolean; tests?: readonly BuildTest[] },
  ): Promise<Proven> {
    const serving = this.#o.store.functions.get(revision.functionName)?.activeRevision === revision.id;
    // The image build's output as it streamed: a failed build returns no log, so the revision keeps this.
    const lines: string[] = [];
    let prepared = revision;
    let warm: LiveInstance | undefined;
    try {
      progress(`preparing revision #${revision.number}`);
      const ready = await this.#preparer.prepare(revision, spec, progress, lines);
      prepared = ready.revision;
      progress("starting an instance to check that the handler loads");
      warm = await this.#o.fleet.prepare(revision.functionName, spec, ready.servable);
      const tests = options.tests ?? [];
      if (tests.length > 0) {
        if (!warm.upstream) throw new FuncdError("INTERNAL", `Instance ${warm.id} has no connection to test`);
        const log = (text: string) =>
          this.#o.buildLog?.(revision.functionName, revision.id, `funcd: ${text}`);
        await testInstance({
          upstream: warm.upstream,
          functionName: revision.functionName,
          timeoutMs: spec.timeout,
          tests,
          onProgress: (line) => {
            progress(line);
            log(line);
          },
        });
      }
      return { ...ready, warm, revision: prepared };
    } catch (err) {
      if (warm) await this.#o.fleet.discard(warm).catch(() => undefined);
      const error =
        err instanceof FuncdError
          ? err
          : new FuncdError("DEPLOY_FAILED", `Deploying "${revision.functionName}" failed: ${messageOf(err)}`);
      if (options.keepFailure && !serving) {
        const buildLog = prepared.buildLog ?? (lines.length > 0 ? lines.join("\n") : logFromError(error));
        this.#o.store.revisions.put({ ...prepared, status: "failed", error: error.message, buildLog });
      }
      // The serving revision's folder is in use by its instances.
      if (!serving) await this.#o.artifacts.remove(revision.id).catch(() => undefined);
      const previous = options.keepFailure ? " The previous revision keeps serving." : "";
      // A multi-line message (a test diff) keeps its first line as the sentence, the rest below it.
      const [first, ...rest] = error.message.split("\n");
      throw new FuncdError(
        error.code,
        [
          `Cannot deploy "${revision.functionName}" (revision #${revision.number}): ${first}${previous}`,
          ...rest,
        ].join("\n"),
        {
          cause: err,
          extra: { revision: revision.id, ...error.extra },
        },
      );
    }
  }

  async #switchTo(
    name: string,
    spec: FunctionSpec,
    revision: RevisionRecord,
    existing: FunctionRecord | undefined,
    { warm, dependencies, servable }: Proven,
    progress: Progress,
  ): Promise<DeployResult> {
    const now = this.#o.clock.now();
    const record: FunctionRecord = {
      name,
      spec,
      activeRevision: revision.id,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    const ready: RevisionRecord = { ...revision, status: "ready", error: null };
    try {
      this.#o.store.transaction(() => {
        // Again, atomically with the switch: a secret deleted while this deploy was building (its
        // function not yet using it, so the delete was allowed) must not leave a function that cannot start.
        this.#checkSecrets(name, spec);
        this.#o.store.revisions.put(ready);
        this.#o.store.functions.put(record);
      });
      this.#rebuildRoutes();
    } catch (err) {
      await this.#o.fleet.discard(warm);
      throw err;
    }
    progress(`switching traffic to revision #${revision.number}`);
    this.#o.fleet.activate(name, spec, servable, warm);
    if (ready.image) this.#o.imageUsed?.(ready.image);
    this.#o.onFunctionsChanged?.();
    this.#o.logger.info({ function: name, revision: revision.id, number: revision.number }, "deployed");
    return { function: record, revision: ready, changed: true, dependencies };
  }

  #planDependencies(name: string, template: TemplateMeta, manifest: readonly ManifestEntry[]) {
    try {
      return this.#o.dependencies.plan(template, manifest);
    } catch (err) {
      if (!(err instanceof FuncdError)) throw err;
      throw new FuncdError(err.code, `Cannot deploy "${name}": ${err.message}`, {
        cause: err,
        extra: err.extra,
      });
    }
  }

  /** Drops dependency installs no revision uses any more (the cache keeps recent ones a while). */
  async #collectDependencies(): Promise<void> {
    const inUse = new Set<string>();
    for (const fn of this.#o.store.functions.list()) {
      for (const r of this.#o.store.revisions.listFor(fn.name)) if (r.depsKey) inUse.add(r.depsKey);
    }
    await this.#o.dependencies.collectGarbage(inUse).catch((err: unknown) => {
      // Housekeeping: a failure costs disk space, never a deploy or a delete.
      this.#o.logger.warn({ err: messageOf(err) }, "could not collect unused dependency installs");
    });
  }

  /** Raw .tar.gz upload (`PUT .../code`): the function keeps its spec, gets new code. */
  deployArchive(name: string, archive: Buffer, onProgress?: Progress): Promise<DeployResult> {
    const current = this.#require(name);
    return this.deploy({ ...current.spec, archive: archive.toString("base64") } as DeployRequest, {
      ...(onProgress ? { onProgress } : {}),
    });
  }

  #checkRoutes(name: string, routes: readonly string[]): void {
    for (const route of routes) {
      const owner = this.#o.routes.ownerOf(route);
      if (owner && owner !== name) {
        throw new FuncdError("ROUTE_CONFLICT", `Route "${route}" already belongs to function "${owner}"`, {
          extra: { route, owner },
        });
      }
    }
  }

  /** The code of a git source, with the credentials of its secret (read here, never stored with the spec). */
  async #fetchGit(
    name: string,
    git: NonNullable<FunctionSpec["source"]>["git"],
    progress: Progress,
  ): Promise<{ files: CodeFile[]; commit: string }> {
    let credential: Buffer | undefined;
    if (git.secret !== undefined) {
      credential = this.#o.store.secrets.value(git.secret);
      if (credential === undefined) {
        throw new FuncdError(
          "SECRET_NOT_FOUND",
          `Cannot deploy "${name}": its git source uses secret "${git.secret}", which does not exist; create it first (funcd secret set ${git.secret}). Nothing changed.`,
          { extra: { missing: [git.secret] } },
        );
      }
    }
    try {
      return await fetchGitSource(git, { credential, maxBytes: this.#o.maxCodeBytes, onProgress: progress });
    } catch (err) {
      if (!(err instanceof FuncdError)) throw err;
      throw new FuncdError(
        err.code,
        `Cannot deploy "${name}": ${err.message}. The previous revision keeps serving.`,
        {
          cause: err,
          extra: err.extra,
        },
      );
    }
  }

  /** Fails before any work is done when the spec names secrets that do not exist (values are read at start). */
  #checkSecrets(name: string, spec: FunctionSpec): void {
    const listed = new Set(spec.secrets ?? []);
    const unlisted = Object.entries(spec.secretEnv ?? {}).filter(([, secret]) => !listed.has(secret));
    if (unlisted.length > 0) {
      const [variable, secret] = unlisted[0] ?? ["", ""];
      throw new FuncdError(
        "BAD_REQUEST",
        `Cannot deploy "${name}": secretEnv.${variable} names secret "${secret}", which is not in its secrets list; add it to secrets`,
      );
    }
    const missing = (spec.secrets ?? []).filter((secret) => this.#o.store.secrets.get(secret) === undefined);
    if (missing.length === 0) return;
    const list = missing.map((m) => `"${m}"`).join(", ");
    throw new FuncdError(
      "SECRET_NOT_FOUND",
      `Cannot deploy "${name}": it uses secret${missing.length === 1 ? "" : "s"} ${list}, which ${missing.length === 1 ? "does" : "do"} not exist; create ${missing.length === 1 ? "it" : "them"} first (funcd secret set ${missing[0]}). Nothing changed.`,
      { extra: { missing } },
    );
  }

  #rebuildRoutes(): void {
    this.#o.routes.rebuild(
      this.#o.store.functions.list().map((f) => ({ name: f.name, routes: f.spec.routes })),
    );
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The build log an image build failure carries (`extra.log`: text or lines), if any. */
function logFromError(error: FuncdError): string | null {
  const log = error.extra.log;
  if (typeof log === "string") return log;
  if (Array.isArray(log)) return log.map(String).join("\n");
  return null;
}
