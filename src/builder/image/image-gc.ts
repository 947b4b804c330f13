/**
 * Garbage collection of funcd's images: an image goes when no revision uses its tag and neither its
 * build nor its last use is within the retention period (default 14 days). The decision is a pure
 * function of the image list, the usage and the time (tested as a table); the runner applies it through
 * the builder, which only ever lists and removes images labelled funcd.managed=true.
 */
import type { Logger } from "../../shared/logger.js";
import type { ImageBuilder, ImageInfo } from "./image-builder.js";

/** Default time an unused image is kept after its build or its last use. */
export const DEFAULT_IMAGE_RETENTION_MS = 14 * 24 * 3_600_000;

/** What the decision reads of an image. */
export interface GcImage {
  tag: string | null;
  id: string;
  createdAt: number;
  /** Whether it carries funcd.managed=true: anything else is never removed. */
  managed: boolean;
}

export interface GcUsage {
  /** Tags some revision uses (active or not: a rollback target must still be there). */
  inUse: ReadonlySet<string>;
  /** When a tag last served (an instance started from it), ms since the epoch; undefined when never. */
  lastUsed: (tag: string) => number | undefined;
}

export interface GcDecision<T extends GcImage = GcImage> {
  image: T;
  remove: boolean;
  reason: string;
}

/** Decides, for each image, whether it goes; see the module comment. */
export function decideImageGc<T extends GcImage>(
  images: readonly T[],
  usage: GcUsage,
  options: { now: number; retentionMs?: number },
): GcDecision<T>[] {
  const retention = options.retentionMs ?? DEFAULT_IMAGE_RETENTION_MS;
  return images.map((image) => {
    if (!image.managed) return { image, remove: false, reason: "not managed by funcd" };
    if (image.tag !== null && usage.inUse.has(image.tag)) {
      return { image, remove: false, reason: "used by a revision" };
    }
    const used = image.tag === null ? undefined : usage.lastUsed(image.tag);
    const last = Math.max(image.createdAt, used ?? Number.NEGATIVE_INFINITY);
    if (options.now - last < retention) {
      return {
        image,
        remove: false,
        reason: used !== undefined && used > image.createdAt ? "used recently" : "built recently",
      };
    }
    return {
      image,
      remove: true,
      reason: image.tag === null ? "untagged and old" : "unused for longer than the retention period",
    };
  });
}

export interface ImageGcOptions extends GcUsage {
  builder: Pick<ImageBuilder, "list" | "remove">;
  retentionMs?: number;
  /** The time; default Date.now. */
  now?: () => number;
  /** Only these images are considered (tests use it to stay within their own images). */
  select?: (image: ImageInfo) => boolean;
  logger?: Logger;
}

export interface ImageGcReport {
  removed: ImageInfo[];
  /** Sum of the removed images' sizes (shared layers counted with each image). */
  freedBytes: number;
  /** Images the decision kept. */
  kept: number;
  /** Images it meant to remove but the engine refused (a container of an old revision still runs). */
  failed: { image: ImageInfo; reason: string }[];
}

/** Lists funcd's images, decides, removes; one failed removal does not stop the others. */
export async function collectImageGarbage(options: ImageGcOptions): Promise<ImageGcReport> {
  const listed = await options.builder.list();
  const images = listed
    .filter((image) => options.select?.(image) ?? true)
    // list() asks the engine for funcd.managed=true only.
    .map((image) => ({ ...image, managed: true }));
  const decisions = decideImageGc(images, options, {
    now: (options.now ?? Date.now)(),
    ...(options.retentionMs === undefined ? {} : { retentionMs: options.retentionMs }),
  });
  const report: ImageGcReport = { removed: [], freedBytes: 0, kept: 0, failed: [] };
  for (const { image: withFlag, remove } of decisions) {
    const { managed: _managed, ...image } = withFlag;
    if (!remove) {
      report.kept++;
      continue;
    }
    try {
      await options.builder.remove(image.tag ?? image.id);
      report.removed.push(image);
      report.freedBytes += image.sizeBytes;
    } catch (err) {
      report.failed.push({ image, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  if (report.removed.length > 0 || report.failed.length > 0) {
    options.logger?.info(
      {
        removed: report.removed.map((i) => i.tag ?? i.id),
        freedBytes: report.freedBytes,
        failed: report.failed.length,
      },
      "removed unused images",
    );
  }
  return report;
}
