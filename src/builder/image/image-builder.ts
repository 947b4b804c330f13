/**
 * Builds function and runtime images from a runtime's template (see the template's Dockerfile and
 * `context.ts` for the layout) on a Docker engine, through the Engine API: the context is streamed as a
 * tar, nothing shells out to the `docker` CLI.
 *
 * Images are tagged by content hash (`funcd/<function>:<hash>`, `funcd/runtime-<runtime>:<hash>`), so a
 * build whose inputs did not change is one inspect of an existing tag. Every image carries the labels
 * funcd.managed / funcd.kind / funcd.function / funcd.runtime, and `list` and `remove` never touch an
 * image without funcd.managed=true.
 */
import type Docker from "dockerode";
import type { Engine } from "../../drivers/docker/engine.js";
import { LABELS } from "../../drivers/docker/engine.js";
import { FuncdError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { TemplateMeta } from "../runtimes.js";
import {
  assembleContext,
  type BuildTarget,
  type ContextFile,
  contentHash,
  readTemplateFiles,
  removeStaleContexts,
  requireImage,
} from "./context.js";
import {
  engineError,
  engineMessage,
  ensureBaseImage,
  follow,
  inspectOrNull,
  statusOf,
} from "./engine-calls.js";
import { EngineOutput } from "./progress.js";

/** The runtime an image runs (LABELS in engine.ts has no entry for it yet). */
export const RUNTIME_LABEL = LABELS.runtime;
/** Default limit of one build (a build step may compile a large bundle). */
export const DEFAULT_BUILD_TIMEOUT_MS = 15 * 60_000;
/** Log lines a failed build's error carries; the message itself quotes the last few. */
const ERROR_LOG_LINES = 40;
const QUOTE_LINES = 8;

export interface ImageBuilderOptions {
  /** The engine, connected on first use: a daemon that never builds never connects. */
  engine: () => Promise<Engine>;
  logger: Logger;
  /**
   * Where build contexts are assembled: a folder of this daemon's (contexts a crash left there are removed
   * before the first build), on the dependency cache's file system so contexts hard-link it. Default: the
   * OS temp dir (never swept).
   */
  workDir?: string;
  /** Let the engine pull a missing base image (default true); without it a missing base fails at once. */
  pull?: boolean;
  buildTimeoutMs?: number;
  pullTimeoutMs?: number;
}

/** One function to build into an image. */
export interface FunctionBuildRequest {
  functionName: string;
  template: TemplateMeta;
  /** The function's files, paths relative to its folder. */
  files: readonly ContextFile[];
  /** Its installed dependencies (a dependency-cache entry and its key), if it has any. */
  dependencies?: { dir: string; key: string } | null | undefined;
  handler: string;
  handlerStyle: string;
  timeoutMs: number;
  /** Build FROM this image instead of the template's `image.base`. */
  baseImage?: string | undefined;
  /** Build even when the tag exists (every step runs again, no layer cache). */
  noCache?: boolean | undefined;
  /** Each build step and output line, as it happens. */
  onProgress?: ((line: string) => void) | undefined;
}

export interface BuildResult {
  /** `funcd/<function>:<hash>`: run it with `docker run -p 8080:8080 <tag>`. */
  tag: string;
  imageId: string;
  /** True when nothing was built: the tag existed (or a concurrent build of the same tag made it). */
  cached: boolean;
  durationMs: number;
  /** The build's output (steps and their output); empty for a cached image. */
  log: string[];
  sizeBytes: number;
}

export interface RuntimeImageOptions {
  baseImage?: string | undefined;
  onProgress?: ((line: string) => void) | undefined;
}

/** A funcd image on the engine. */
export interface ImageInfo {
  /** `repo:tag`; null for an image whose tag moved to a newer build (`--no-cache` of the same inputs). */
  tag: string | null;
  id: string;
  kind: "function" | "runtime";
  function?: string;
  runtime: string;
  sizeBytes: number;
  /** When the engine built it, ms since the epoch. */
  createdAt: number;
}

interface BuildSpec {
  tag: string;
  target: BuildTarget;
  templateFiles: ContextFile[];
  functionFiles: readonly ContextFile[];
  depsDir: string | undefined;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  noCache: boolean;
  /** Names what is built, in messages: `function "hello"`, `the nodejs20 runtime`. */
  what: string;
}

/** See the module comment. */
export class ImageBuilder {
  readonly #o: ImageBuilderOptions;
  #engine: Promise<Engine> | undefined;
  /** Builds in progress by tag: a second request for the same tag waits for the first. */
  readonly #inflight = new Map<string, Promise<BuildResult>>();
  /** Removing the contexts a crashed run left in `workDir`: once, before this run's first build. */
  #swept: Promise<void> | undefined;

  constructor(options: ImageBuilderOptions) {
    this.#o = options;
  }

  /**
   * The function's image: found by its content hash, or built now (target `function`). Throws
   * BASE_IMAGE_MISSING when the base image is not on the engine and cannot be pulled, IMAGE_BUILD_FAILED
   * (with `extra.log`) when a build step fails.
   */
  async buildFunction(request: FunctionBuildRequest): Promise<BuildResult> {
    const began = performance.now();
    const { template, functionName } = request;
    const image = requireImage(template);
    const base = request.baseImage ?? image.base;
    const templateFiles = await readTemplateFiles(template);
    const docker = await this.#docker();
    const baseImageId = await this.#ensureBase(docker, base, request.onProgress);
    const buildArgs = {
      ...runtimeArgs(template, base),
      ...(image.build ? { FUNCD_BUILD: image.build } : {}),
      ...(image.test ? { FUNCD_TEST: image.test } : {}),
      FUNCD_HANDLER: request.handler,
      FUNCD_HANDLER_STYLE: request.handlerStyle,
      FUNCD_FUNCTION_NAME: functionName,
      FUNCD_TIMEOUT_MS: String(request.timeoutMs),
    };
    const labels = {
      [LABELS.managed]: "true",
      [LABELS.kind]: "function",
      [LABELS.function]: functionName,
      [RUNTIME_LABEL]: template.runtime,
    };
    const depsKey = request.dependencies?.key ?? null;
    const hash = contentHash({
      target: "function",
      templateFiles,
      functionFiles: request.files,
      depsKey,
      baseImageId,
      buildArgs,
      labels,
    });
    return this.#buildOnce(
      {
        tag: `funcd/${functionName}:${hash}`,
        target: "function",
        templateFiles,
        functionFiles: request.files,
        depsDir: request.dependencies?.dir,
        buildArgs,
        labels,
        noCache: request.noCache === true,
        what: `function "${functionName}"`,
      },
      began,
      request.onProgress,
    );
  }

  /**
   * The runtime image of `template` (its `runtime` stage only: base, OS packages, runtime server), which
   * buildless instances run with the function mounted. Built once per content hash; concurrent calls for
   * one tag share one build. Returns the tag.
   */
  async runtimeImage(template: TemplateMeta, options: RuntimeImageOptions = {}): Promise<string> {
    const began = performance.now();
    const image = requireImage(template);
    const base = options.baseImage ?? image.base;
    const templateFiles = await readTemplateFiles(template);
    const docker = await this.#docker();
    const baseImageId = await this.#ensureBase(docker, base, options.onProgress);
    const buildArgs = runtimeArgs(template, base);
    const labels = {
      [LABELS.managed]: "true",
      [LABELS.kind]: "runtime",
      [RUNTIME_LABEL]: template.runtime,
    };
    const hash = contentHash({
      target: "runtime",
      templateFiles,
      functionFiles: [],
      depsKey: null,
      baseImageId,
      buildArgs,
      labels,
    });
    const result = await this.#buildOnce(
      {
        tag: `funcd/runtime-${template.runtime}:${hash}`,
        target: "runtime",
        templateFiles,
        functionFiles: [],
        depsDir: undefined,
        buildArgs,
        labels,
        noCache: false,
        what: `the ${template.runtime} runtime`,
      },
      began,
      options.onProgress,
    );
    return result.tag;
  }

  /** funcd's images on the engine (labelled funcd.managed=true), one entry per tag, newest first. */
  async list(): Promise<ImageInfo[]> {
    const docker = await this.#docker();
    const images = await docker.listImages({ filters: { label: [`${LABELS.managed}=true`] } });
    const out: ImageInfo[] = [];
    for (const image of images) {
      const labels = image.Labels ?? {};
      if (labels[LABELS.managed] !== "true") continue;
      const tags = (image.RepoTags ?? []).filter((t) => t !== "<none>:<none>");
      const kind = labels[LABELS.kind] === "runtime" ? "runtime" : "function";
      const fn = labels[LABELS.function];
      for (const tag of tags.length > 0 ? tags : [null]) {
        out.push({
          tag,
          id: image.Id,
          kind,
          ...(fn ? { function: fn } : {}),
          runtime: labels[RUNTIME_LABEL] ?? "",
          sizeBytes: image.Size,
          createdAt: image.Created * 1000,
        });
      }
    }
    return out.sort((a, b) => b.createdAt - a.createdAt);
  }

  /**
   * Removes a funcd image by tag (or id, for one without a tag). IMAGE_NOT_FOUND when there is none;
   * BAD_REQUEST when it is not funcd's or a container still uses it.
   */
  async remove(tagOrId: string): Promise<void> {
    const docker = await this.#docker();
    const image = docker.getImage(tagOrId);
    let info: Docker.ImageInspectInfo;
    try {
      info = await image.inspect();
    } catch (err) {
      if (statusOf(err) === 404)
        throw new FuncdError("IMAGE_NOT_FOUND", `No image "${tagOrId}" on the engine`);
      throw engineError(err, `inspecting image "${tagOrId}"`);
    }
    if (info.Config?.Labels?.[LABELS.managed] !== "true") {
      throw new FuncdError(
        "BAD_REQUEST",
        `Image "${tagOrId}" is not managed by funcd; funcd leaves it alone`,
      );
    }
    try {
      await image.remove();
    } catch (err) {
      if (statusOf(err) === 409) {
        throw new FuncdError("IMAGE_IN_USE", `Image "${tagOrId}" cannot be removed: ${engineMessage(err)}`);
      }
      if (statusOf(err) === 404)
        throw new FuncdError("IMAGE_NOT_FOUND", `No image "${tagOrId}" on the engine`);
      throw engineError(err, `removing image "${tagOrId}"`);
    }
  }

  // ── internals ────────────────────────────────────────────────────────────

  #docker(): Promise<Docker> {
    if (!this.#engine) {
      const connecting = this.#o.engine();
      this.#engine = connecting;
      // A failed connection is not remembered: the next build tries again (the engine may be up by then).
      connecting.catch(() => {
        if (this.#engine === connecting) this.#engine = undefined;
      });
    }
    return this.#engine.then((engine) => engine.docker);
  }

  /** The tag when it exists (and no rebuild was asked for), else one build per tag at a time. */
  async #buildOnce(
    spec: BuildSpec,
    began: number,
    onProgress: ((line: string) => void) | undefined,
  ): Promise<BuildResult> {
    const docker = await this.#docker();
    // Look up and register in one synchronous step: a concurrent caller either finds this build or
    // registers its own, never both building.
    const running = this.#inflight.get(spec.tag);
    if (running) {
      onProgress?.(`waiting for a build of the same image (${spec.tag}) to finish`);
      const result = await running;
      return { ...result, cached: true, log: [], durationMs: elapsed(began) };
    }
    const attempt = (async () => {
      if (!spec.noCache) {
        const existing = await inspectOrNull(docker, spec.tag);
        if (existing) {
          onProgress?.(`image ${spec.tag} is up to date (cache hit)`);
          return {
            tag: spec.tag,
            imageId: existing.Id,
            cached: true,
            durationMs: elapsed(began),
            log: [],
            sizeBytes: existing.Size,
          };
        }
      }
      return this.#build(docker, spec, began, onProgress);
    })();
    this.#inflight.set(spec.tag, attempt);
    try {
      return await attempt;
    } finally {
      this.#inflight.delete(spec.tag);
    }
  }

  async #build(
    docker: Docker,
    spec: BuildSpec,
    began: number,
    onProgress: ((line: string) => void) | undefined,
  ): Promise<BuildResult> {
    onProgress?.(`building image ${spec.tag}`);
    const { workDir } = this.#o;
    // Only in a folder of our own: in the shared temp dir another daemon's contexts may be building.
    if (workDir) {
      this.#swept ??= removeStaleContexts(workDir);
      await this.#swept;
    }
    await using context = await assembleContext({
      templateFiles: spec.templateFiles,
      functionFiles: spec.functionFiles,
      depsDir: spec.depsDir,
      workDir: this.#o.workDir,
    });
    const output = new EngineOutput(onProgress);
    // A forced rebuild moves the tag to a new image; the old one is removed afterwards (see below).
    const replaced = spec.noCache ? (await inspectOrNull(docker, spec.tag))?.Id : undefined;
    const timeoutMs = this.#o.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    const abort = AbortSignal.timeout(timeoutMs);
    try {
      const stream = await docker.buildImage(context.tar(), {
        t: spec.tag,
        target: spec.target,
        buildargs: spec.buildArgs,
        labels: spec.labels,
        nocache: spec.noCache,
        // Throwaway step containers go, even after a failed step.
        rm: true,
        forcerm: true,
        abortSignal: abort,
      });
      await follow(docker, stream, output);
    } catch (err) {
      output.flush();
      if (abort.aborted) {
        throw this.#failure(spec, output, `it did not finish within ${Math.round(timeoutMs / 1000)} s`);
      }
      if (err instanceof FuncdError) throw err;
      throw this.#failure(spec, output, engineMessage(err));
    }
    output.flush();
    if (output.error !== undefined) throw this.#failure(spec, output, output.error);
    const built = await inspectOrNull(docker, spec.tag);
    if (!built)
      throw this.#failure(spec, output, `the engine reported success but ${spec.tag} does not exist`);
    if (replaced !== undefined && replaced !== built.Id) {
      // Untagged now, nothing can name it; a container of it that still runs keeps it (the engine refuses).
      await docker
        .getImage(replaced)
        .remove()
        .catch(() => undefined);
    }
    const durationMs = elapsed(began);
    this.#o.logger.info(
      { image: spec.tag, durationMs: Math.round(durationMs), sizeBytes: built.Size },
      "built image",
    );
    return {
      tag: spec.tag,
      imageId: built.Id,
      cached: false,
      durationMs,
      log: output.lines,
      sizeBytes: built.Size,
    };
  }

  #ensureBase(docker: Docker, base: string, onProgress: ((line: string) => void) | undefined) {
    return ensureBaseImage(docker, base, {
      pull: this.#o.pull !== false,
      pullTimeoutMs: this.#o.pullTimeoutMs,
      onProgress,
      logger: this.#o.logger,
    });
  }

  #failure(spec: BuildSpec, output: EngineOutput, why: string): FuncdError {
    const log = output.lines.slice(-ERROR_LOG_LINES);
    const quoted = log
      .filter((l) => !l.startsWith("error: "))
      .slice(-QUOTE_LINES)
      .join("\n");
    return new FuncdError(
      "IMAGE_BUILD_FAILED",
      `Building the image of ${spec.what} failed: ${why}${quoted ? `\n${quoted}` : ""}`,
      { extra: { log, image: spec.tag } },
    );
  }
}

/** Build arguments of the `runtime` stage: base, OS packages, user. */
function runtimeArgs(template: TemplateMeta, base: string): Record<string, string> {
  const image = requireImage(template);
  return {
    BASE_IMAGE: base,
    PACKAGES: image.packages.join(" "),
    ...(image.user ? { FUNCD_USER: image.user } : {}),
  };
}

function elapsed(began: number): number {
  return performance.now() - began;
}
