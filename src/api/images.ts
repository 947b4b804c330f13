import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { type CodeFile, checkHandlerFile, readCode } from "../builder/code.js";
import type { BuildResult, ImageBuilder, ImageInfo } from "../builder/image/image-builder.js";
import { collectImageGarbage, DEFAULT_IMAGE_RETENTION_MS } from "../builder/image/image-gc.js";
import type { RuntimeRegistry, TemplateMeta } from "../builder/runtimes.js";
import { DeployRequestFields } from "../deploy/spec.js";
import { FuncdError } from "../shared/errors.js";
import { respondWithProgress } from "./progress.js";

/** Which revisions use which image, and when an image last served. */
export interface ImageUsage {
  /** Image tag → ids of the revisions that use it (any status: a rollback target counts). */
  inUse(): Map<string, string[]>;
  /** When an instance last started from the tag, ms since the epoch; undefined when never (or unknown). */
  lastUsed(tag: string): number | undefined;
}

export interface PrepareDependenciesInput {
  functionName: string;
  template: TemplateMeta;
  files: readonly CodeFile[];
  /** Install progress ("installing dependencies (npm ci)", the installer's lines). */
  onProgress: (message: string) => void;
}

/** What the image routes need; `src/app.ts` wires them. */
export interface ImagesRouteOptions {
  builder: Pick<ImageBuilder, "buildFunction" | "list" | "remove">;
  runtimes: RuntimeRegistry;
  usage: ImageUsage;
  /**
   * The function's installed dependencies (the shared dependency cache: plan, then ensure), or null when
   * it has none. Throws like a deploy's install (DEPLOY_FAILED with the installer's output).
   */
  prepareDependencies(
    input: PrepareDependenciesInput,
  ): Promise<{ dir: string; key: string; cached: boolean } | null>;
  /** Largest code upload, as for deploys. */
  maxCodeBytes: number;
  /** How long an unused image is kept (default 14 days). */
  retentionMs?: number | undefined;
}

/** A deploy's body (spec + code; `baseImage` picks another base) and `noCache`. Resources do not matter here. */
const BuildBody = DeployRequestFields.extend({
  noCache: z.boolean().default(false).describe("build even when an image of the same inputs exists"),
});
type BuildBody = z.output<typeof BuildBody>;
const TagParams = z.object({ tag: z.string().min(1).max(300) });

const tags = ["images"];

/**
 * Images: list funcd's images with their use, remove one, collect the unused ones, and build a
 * function's image without deploying it (`funcd build`).
 */
export function imageRoutes(options: ImagesRouteOptions) {
  const { builder, usage } = options;

  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();

    app.get(
      "/api/v1/images",
      {
        schema: {
          tags,
          summary: "List funcd's images with size, age, last use and the revisions using them",
        },
      },
      async () => {
        const inUse = usage.inUse();
        return { items: (await builder.list()).map((image) => imageView(image, inUse, usage)) };
      },
    );

    app.delete(
      "/api/v1/images/:tag",
      {
        schema: {
          tags,
          summary: "Remove an image no revision uses (the tag URL-encoded: funcd%2Fhello%3A3f9a…)",
          params: TagParams,
        },
      },
      async (request, reply) => {
        const { tag } = request.params;
        const users = usage.inUse().get(tag) ?? [];
        if (users.length > 0) {
          throw new FuncdError(
            "IMAGE_IN_USE",
            `Image "${tag}" is used by revision${users.length === 1 ? "" : "s"} ${users.join(", ")}; delete or redeploy ${users.length === 1 ? "it" : "them"} first`,
            { extra: { inUseBy: users } },
          );
        }
        await builder.remove(tag);
        return reply.code(204).send();
      },
    );

    app.post(
      "/api/v1/images/gc",
      {
        schema: {
          tags,
          summary: "Remove funcd images no revision uses and unused for longer than the retention period",
        },
      },
      async () => {
        const inUse = usage.inUse();
        const report = await collectImageGarbage({
          builder,
          inUse: new Set(inUse.keys()),
          lastUsed: (tag) => usage.lastUsed(tag),
          ...(options.retentionMs === undefined ? {} : { retentionMs: options.retentionMs }),
        });
        return {
          removed: report.removed.map((image) => ({
            tag: image.tag,
            id: image.id,
            sizeBytes: image.sizeBytes,
          })),
          freedBytes: report.freedBytes,
          kept: report.kept,
          failed: report.failed.map((f) => ({ tag: f.image.tag, id: f.image.id, reason: f.reason })),
          retentionMs: options.retentionMs ?? DEFAULT_IMAGE_RETENTION_MS,
        };
      },
    );

    app.post(
      "/api/v1/builds",
      {
        schema: {
          tags,
          summary:
            "Build a function's image without deploying it (Accept: application/x-ndjson streams the progress)",
          body: BuildBody,
        },
      },
      async (request, reply) =>
        respondWithProgress(
          request,
          reply,
          "build",
          (onProgress) => build(request.body, onProgress),
          (view) => ({ status: 200, body: view }),
        ),
    );
  };

  async function build(body: BuildBody, progress: (message: string) => void) {
    const template = options.runtimes.get(body.runtime);
    progress("reading code");
    if (body.files === undefined && body.archive === undefined) {
      throw new FuncdError("BAD_REQUEST", `Building "${body.name}" needs code: send "files" or "archive"`);
    }
    const files = await readCode(body, { maxBytes: options.maxCodeBytes });
    checkHandlerFile(
      body.handler,
      files.map((f) => f.path),
      template,
      options.runtimes.templates(),
    );
    const dependencies = await options.prepareDependencies({
      functionName: body.name,
      template,
      files,
      onProgress: progress,
    });
    const result = await builder.buildFunction({
      functionName: body.name,
      template,
      files,
      dependencies,
      handler: body.handler,
      handlerStyle: body.handlerStyle,
      timeoutMs: body.timeout,
      baseImage: body.baseImage,
      noCache: body.noCache,
      onProgress: progress,
    });
    return buildView(body.name, template.runtime, result, dependencies);
  }
}

/** What `POST /api/v1/builds` answers (also the `result` line of its NDJSON stream). */
export function buildView(
  functionName: string,
  runtime: string,
  result: BuildResult,
  dependencies: { key: string; cached: boolean } | null,
) {
  return {
    function: functionName,
    runtime,
    tag: result.tag,
    imageId: result.imageId,
    cached: result.cached,
    durationMs: Math.round(result.durationMs),
    sizeBytes: result.sizeBytes,
    dependencies: dependencies ? { key: dependencies.key, cached: dependencies.cached } : null,
    log: result.log,
    /** The image serves on its own: this runs it. */
    run: `docker run -p 8080:8080 ${result.tag}`,
  };
}

function imageView(image: ImageInfo, inUse: Map<string, string[]>, usage: ImageUsage) {
  const lastUsed = image.tag === null ? undefined : usage.lastUsed(image.tag);
  return {
    tag: image.tag,
    id: image.id,
    kind: image.kind,
    function: image.function ?? null,
    runtime: image.runtime,
    sizeBytes: image.sizeBytes,
    createdAt: new Date(image.createdAt).toISOString(),
    lastUsedAt: lastUsed === undefined ? null : new Date(lastUsed).toISOString(),
    inUseBy: image.tag === null ? [] : (inUse.get(image.tag) ?? []),
  };
}
