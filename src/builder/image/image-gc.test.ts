import { describe, expect, it } from "vitest";
import type { ImageBuilder, ImageInfo } from "./image-builder.js";
import { collectImageGarbage, DEFAULT_IMAGE_RETENTION_MS, decideImageGc, type GcImage } from "./image-gc.js";

const DAY = 24 * 3_600_000;
const NOW = Date.UTC(2025, 0, 31, 12);

const image = (tag: string | null, ageDays: number, managed = true): GcImage => ({
  tag,
  id: `sha256:${tag ?? "none"}`,
  createdAt: NOW - ageDays * DAY,
  managed,
});

describe("decideImageGc", () => {
  const lastUsed: Record<string, number> = {
    "funcd/a:used-yesterday": NOW - 1 * DAY,
    "funcd/a:used-long-ago": NOW - 20 * DAY,
  };
  const usage = {
    inUse: new Set(["funcd/a:active", "funcd/a:old-but-active"]),
    lastUsed: (tag: string) => lastUsed[tag],
  };

  it.each<[string, GcImage, boolean, string]>([
    ["in use, new", image("funcd/a:active", 1), false, "used by a revision"],
    ["in use, older than the retention", image("funcd/a:old-but-active", 100), false, "used by a revision"],
    ["unused, built recently", image("funcd/a:fresh", 13), false, "built recently"],
    [
      "unused, built long ago but used yesterday",
      image("funcd/a:used-yesterday", 30),
      false,
      "used recently",
    ],
    [
      "unused, built and last used long ago",
      image("funcd/a:used-long-ago", 30),
      true,
      "unused for longer than the retention period",
    ],
    [
      "unused, never used, old",
      image("funcd/a:stale", 15),
      true,
      "unused for longer than the retention period",
    ],
    ["untagged and old", image(null, 15), true, "untagged and old"],
    ["untagged and recent", image(null, 2), false, "built recently"],
    ["not funcd's, however old", image("someone/else:1", 400, false), false, "not managed by funcd"],
  ])("%s", (_what, img, remove, reason) => {
    const [decision] = decideImageGc([img], usage, { now: NOW });
    expect(decision).toEqual({ image: img, remove, reason });
  });

  it("keeps an image exactly until the retention period has passed", () => {
    const edge = { ...image("funcd/a:edge", 0), createdAt: NOW - DEFAULT_IMAGE_RETENTION_MS + 1 };
    expect(decideImageGc([edge], usage, { now: NOW })[0]?.remove).toBe(false);
    expect(decideImageGc([edge], usage, { now: NOW + 1 })[0]?.remove).toBe(true);
  });

  it("honours a configured retention", () => {
    const img = image("funcd/a:two-days", 2);
    expect(decideImageGc([img], usage, { now: NOW, retentionMs: 1 * DAY })[0]?.remove).toBe(true);
    expect(decideImageGc([img], usage, { now: NOW, retentionMs: 3 * DAY })[0]?.remove).toBe(false);
  });
});

describe("collectImageGarbage", () => {
  const info = (tag: string | null, ageDays: number, sizeBytes: number): ImageInfo => ({
    tag,
    id: `sha256:${tag ?? "untagged"}`,
    kind: "function",
    function: "a",
    runtime: "nodejs20",
    sizeBytes,
    createdAt: NOW - ageDays * DAY,
  });

  /** An image store in memory, standing in for the engine behind the builder's list/remove. */
  function store(images: ImageInfo[], refuse: Set<string> = new Set()) {
    const removed: string[] = [];
    const builder: Pick<ImageBuilder, "list" | "remove"> = {
      list: async () => images.filter((i) => !removed.includes(i.tag ?? i.id)),
      remove: async (ref: string) => {
        if (refuse.has(ref)) throw new Error(`image ${ref} is used by a running container`);
        removed.push(ref);
      },
    };
    return { builder, removed };
  }

  it("removes what the decision says, by tag or by id, and reports sizes and refusals", async () => {
    const { builder, removed } = store(
      [
        info("funcd/a:old", 20, 100),
        info("funcd/a:busy", 20, 50),
        info("funcd/a:new", 1, 10),
        info("funcd/a:active", 20, 10),
        info(null, 20, 7),
      ],
      new Set(["funcd/a:busy"]),
    );
    const report = await collectImageGarbage({
      builder,
      inUse: new Set(["funcd/a:active"]),
      lastUsed: () => undefined,
      now: () => NOW,
    });
    expect(removed).toEqual(["funcd/a:old", "sha256:untagged"]);
    expect(report.removed.map((i) => i.tag)).toEqual(["funcd/a:old", null]);
    expect(report.freedBytes).toBe(107);
    expect(report.kept).toBe(2);
    expect(report.failed).toEqual([
      {
        image: expect.objectContaining({ tag: "funcd/a:busy" }),
        reason: expect.stringContaining("running container"),
      },
    ]);
  });

  it("considers only the selected images", async () => {
    const { builder, removed } = store([info("funcd/a:old", 20, 1), info("funcd/b:old", 20, 1)]);
    await collectImageGarbage({
      builder,
      inUse: new Set(),
      lastUsed: () => undefined,
      now: () => NOW,
      select: (i) => i.tag?.startsWith("funcd/b:") === true,
    });
    expect(removed).toEqual(["funcd/b:old"]);
  });
});
