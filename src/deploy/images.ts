/**
 * The deployer's view of the image builder (docker driver, image mode): build — or find by content hash —
 * a revision's image, and tell whether a recorded image is still on the engine. Narrow on purpose, so
 * the deploy path does not depend on how images are built; `imageBuilderAdapter` maps it onto
 * `ImageBuilder` (src/builder/image/).
 */
import type { ImageBuilder } from "../builder/image/image-builder.js";
import type { TemplateMeta } from "../builder/runtimes.js";
import type { Engine } from "../drivers/docker/engine.js";
import { FuncdError } from "../shared/errors.js";
import type { BlobRepo, RevisionRecord } from "../store/types.js";
import type { FunctionSpec } from "./spec.js";

export interface RevisionImageInput {
  revision: RevisionRecord;
  spec: FunctionSpec;
  template: TemplateMeta;
  /** The revision's prepared folder: its files, with the dependency install linked in. */
  artifactDir: string;
  /** The dependency install (`<dataDir>/deps/<key>`), when the revision has one. */
  dependencies: { key: string; dir: string } | undefined;
  /** Every line of build progress (steps, layer pulls, the engine's output). */
  onProgress: (line: string) => void;
}

export interface BuiltRevisionImage {
  tag: string;
  /** True when the image existed already and nothing was built. */
  cached: boolean;
  /** The build's output. */
  log: string;
}

export interface RevisionImages {
  build(input: RevisionImageInput): Promise<BuiltRevisionImage>;
  exists(tag: string): Promise<boolean>;
}

/** What the adapter needs of the builder and the store. */
export interface ImageBuilderAdapterOptions {
  builder: Pick<ImageBuilder, "buildFunction">;
  /** The engine the builder uses (to look an image up by tag). */
  engine: () => Promise<Engine>;
  /** The blob store: the revision's files are read from it by hash. */
  blobs: Pick<BlobRepo, "get">;
}

/** `RevisionImages` on the image builder: a revision's files, dependencies and settings become a build. */
export function imageBuilderAdapter(options: ImageBuilderAdapterOptions): RevisionImages {
  return {
    async build(input) {
      const { revision, spec } = input;
      const files = revision.files.map((entry) => {
        const data = options.blobs.get(entry.hash);
        if (!data) {
          throw new FuncdError("INTERNAL", `Blob ${entry.hash} of ${entry.path} is missing from the store`);
        }
        return { path: entry.path, data, mode: entry.mode };
      });
      const built = await options.builder.buildFunction({
        functionName: revision.functionName,
        template: input.template,
        files,
        dependencies: input.dependencies ?? null,
        handler: spec.handler,
        handlerStyle: spec.handlerStyle,
        timeoutMs: spec.timeout,
        baseImage: spec.baseImage,
        onProgress: input.onProgress,
      });
      return { tag: built.tag, cached: built.cached, log: built.log.join("\n") };
    },
    async exists(tag) {
      const { docker } = await options.engine();
      try {
        await docker.getImage(tag).inspect();
        return true;
      } catch (err) {
        if ((err as { statusCode?: unknown } | null)?.statusCode === 404) return false;
        throw new FuncdError("DOCKER_UNAVAILABLE", `The Docker engine failed inspecting image "${tag}"`, {
          cause: err,
        });
      }
    },
  };
}
