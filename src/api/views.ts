import type { DeployResult } from "../deploy/deployer.js";
import { defaultConcurrency } from "../deploy/spec.js";
import type { Fleet } from "../scaler/fleet.js";
import type { FunctionRecord, RevisionRecord, Store } from "../store/types.js";

/** What the API shows of a function: its spec, its serving revision and its live instances. */
export function functionView(record: FunctionRecord, store: Store, fleet: Fleet) {
  const spec = record.spec;
  const active = record.activeRevision ? store.revisions.get(record.activeRevision) : undefined;
  const live = fleet.status(record.name);
  return {
    name: record.name,
    runtime: spec.runtime,
    handler: spec.handler,
    routes: spec.routes,
    memory: spec.memory,
    timeoutMs: spec.timeout,
    concurrency: defaultConcurrency(spec),
    scale: {
      min: spec.scale.min,
      max: spec.scale.max,
      idleTimeoutMs: spec.scale.idleTimeout,
      targetUtilization: spec.scale.targetUtilization,
      stableWindowMs: spec.scale.stableWindow,
      panicWindowMs: spec.scale.panicWindow,
    },
    env: spec.env,
    labels: spec.labels,
    annotations: spec.annotations,
    status: live?.status ?? (active ? "ready" : "no-revision"),
    activeRevision: active
      ? {
          id: active.id,
          number: active.number,
          createdAt: new Date(active.createdAt).toISOString(),
          image: active.image ?? null,
        }
      : null,
    profile: spec.profile ?? null,
    cpu: spec.cpu ?? null,
    network: spec.network ?? "default",
    build: spec.build ?? "image",
    tests: spec.tests?.length ?? 0,
    // Names only: values never leave the secret store.
    secrets: spec.secrets ?? [],
    // The git source (url, ref, dir, secret name, the serving commit); never credentials.
    source: spec.source ?? null,
    url: `/function/${record.name}`,
    instances: (live?.instances ?? []).map((i) => ({ ...i, startedAt: new Date(i.startedAt).toISOString() })),
    waiting: live?.waiting ?? 0,
    autoscaler: { desired: live?.desired ?? 0, panic: live?.panic ?? false },
    lastExit: live?.lastExit ? { ...live.lastExit, at: new Date(live.lastExit.at).toISOString() } : null,
    createdAt: new Date(record.createdAt).toISOString(),
    updatedAt: new Date(record.updatedAt).toISOString(),
  };
}

/**
 * What the API shows of a revision. The build log can be long, so lists leave it out (`withLog` false)
 * and the single-revision endpoint includes it.
 */
export function revisionView(revision: RevisionRecord, activeId: string | null, withLog = false) {
  return {
    id: revision.id,
    number: revision.number,
    status: revision.status,
    error: revision.error,
    createdAt: new Date(revision.createdAt).toISOString(),
    active: revision.id === activeId,
    files: revision.files.length,
    runtime: revision.spec.runtime,
    handler: revision.spec.handler,
    dependencies: revision.depsKey ? { key: revision.depsKey } : null,
    image: revision.image ?? null,
    commit: revision.spec.source?.git.commit ?? null,
    ...(withLog ? { buildLog: revision.buildLog ?? null } : {}),
  };
}

export function deployView(result: DeployResult, store: Store, fleet: Fleet) {
  return {
    function: functionView(result.function, store, fleet),
    revision: revisionView(result.revision, result.function.activeRevision),
    changed: result.changed,
    /** The dependency install and whether this deploy found it cached (installed nothing). */
    dependencies: result.dependencies,
  };
}
