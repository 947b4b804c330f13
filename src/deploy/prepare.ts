/**
 * Making a revision ready to start: its dependencies installed into the shared cache (or found there),
 * its artifact folder written, and — with the docker driver in image mode — its image built (or found by
 * its content hash). Apart from the Deployer because restore, deploy and rollback all need it, and it is
 * the only part of the deploy path that talks to the builder.
 */
import type { ArtifactCache } from "../builder/artifacts.js";
import type { DependencyCache } from "../builder/dependencies.js";
import type { RuntimeRegistry } from "../builder/runtimes.js";
import type { ServableRevision } from "../scaler/fleet.js";
import type { RevisionRecord, Store } from "../store/types.js";
import type { DependencyUse, Progress } from "./deployer.js";
import type { RevisionImages } from "./images.js";
import type { FunctionSpec } from "./spec.js";

export /** A revision made ready to start: its folder (and image), and the revision record saying so. */
interface Prepared {
  servable: ServableRevision;
  dependencies: DependencyUse | null;
  revision: RevisionRecord;
}

export interface PreparerOptions {
  store: Store;
  artifacts: ArtifactCache;
  dependencies: DependencyCache;
  runtimes: RuntimeRegistry;
  /** See `DeployerOptions.buildLog`. */
  buildLog?: (functionName: string, revisionId: string, text: string) => void;
  /** See `DeployerOptions.images`. */
  images?: RevisionImages;
}

export class RevisionPreparer {
  readonly #o: PreparerOptions;

  constructor(options: PreparerOptions) {
    this.#o = options;
  }

  /**
   * The revision's artifact folder: there already, or written now — after its dependencies are
   * installed into the shared cache (or found there), whose entry is then linked into the folder. With
   * the docker driver in image mode, then its image: built from the same files and dependencies, or
   * found by its content hash. The returned revision carries the image and its build log.
   */
  async prepare(
    revision: RevisionRecord,
    spec: FunctionSpec,
    progress: Progress,
    lines: string[] = [],
  ): Promise<Prepared> {
    let depsDir: string | undefined;
    let dependencies: DependencyUse | null = null;
    const log = (text: string) => this.#o.buildLog?.(revision.functionName, revision.id, text);
    const plan =
      revision.depsKey && !this.#o.artifacts.has(revision.id)
        ? this.#o.dependencies.plan(this.#o.runtimes.get(revision.spec.runtime), revision.files)
        : null;
    if (plan) {
      const ensured = await this.#o.dependencies.ensure(plan, {
        functionName: revision.functionName,
        onProgress: (message) => {
          progress(message);
          log(`funcd: ${message}`);
        },
        onLine: (line) => {
          progress(`installing dependencies: ${line}`);
          log(line);
        },
      });
      depsDir = ensured.dir;
      dependencies = { key: ensured.key, cached: ensured.cached };
    } else if (revision.depsKey) {
      dependencies = { key: revision.depsKey, cached: true };
    }
    const artifactDir = await this.#o.artifacts.materialize(revision.id, revision.files, depsDir);
    let prepared = revision;
    // Without an image builder (process driver) or buildless, instances run the artifact folder; a
    // recorded image stays on the revision for when the daemon runs docker again.
    const images = spec.build === "none" ? undefined : this.#o.images;
    if (images && revision.image && (await images.exists(revision.image))) {
      // The revision was built before (an earlier deploy, a rollback, a restart): run what was proven.
      progress(`image ${revision.image} exists (cache hit)`);
    } else if (images) {
      const built = await images.build({
        revision,
        spec,
        template: this.#o.runtimes.get(spec.runtime),
        artifactDir,
        dependencies: revision.depsKey
          ? { key: revision.depsKey, dir: depsDir ?? this.#o.dependencies.dirFor(revision.depsKey) }
          : undefined,
        onProgress: (line) => {
          lines.push(line);
          progress(line);
          log(line);
        },
      });
      // A cache hit builds nothing and has no log of its own: the log of the build that made the image.
      const buildLog = built.cached ? (revision.buildLog ?? this.#buildLogOf(built.tag)) : built.log;
      prepared = { ...revision, image: built.tag, buildLog };
    }
    const servable: ServableRevision = {
      id: revision.id,
      number: revision.number,
      artifactDir,
      ...(images && prepared.image ? { image: prepared.image } : {}),
    };
    return { servable, dependencies, revision: prepared };
  }

  /** The build log some revision keeps for `image` (revisions differing only in env share an image). */
  #buildLogOf(image: string): string | null {
    for (const id of this.#o.store.revisions.images().get(image) ?? []) {
      const log = this.#o.store.revisions.get(id)?.buildLog;
      if (log) return log;
    }
    return null;
  }
}
