import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { formatTime, shortId } from "../views.js";

/** One image as `GET /api/v1/images` lists it. */
export interface ImageView {
  tag: string | null;
  id: string;
  kind: "function" | "runtime";
  function: string | null;
  runtime: string;
  sizeBytes: number;
  createdAt: string;
  lastUsedAt: string | null;
  inUseBy: string[];
}

interface GcView {
  removed: { tag: string | null; id: string; sizeBytes: number }[];
  freedBytes: number;
  kept: number;
  failed: { tag: string | null; id: string; reason: string }[];
  retentionMs: number;
}

const HEADERS = ["TAG", "FUNCTION", "SIZE", "CREATED", "LAST USED", "IN USE"];

/** `187.2 MiB`, `912 KiB`, `12 B`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function imageRows(items: ImageView[]): string[][] {
  return items.map((i) => [
    i.tag ?? `<none> (${shortId(i.id.replace(/^sha256:/, ""))})`,
    i.function ?? (i.kind === "runtime" ? `(${i.runtime} runtime)` : "-"),
    formatBytes(i.sizeBytes),
    formatTime(i.createdAt),
    formatTime(i.lastUsedAt),
    i.inUseBy.length === 0 ? "-" : i.inUseBy.map(shortId).join(", "),
  ]);
}

/** `funcd images`, `funcd images rm TAG`, `funcd images gc`: the images the daemon built on its engine. */
export function register(program: Command, deps: CliDeps): void {
  const images = program
    .command("images")
    .description("list the container images funcd built (size, last use, the revisions using them)")
    .addHelpText(
      "after",
      "\nExamples:\n  $ funcd images\n  $ funcd images rm funcd/hello:3f9a0c…\n  $ funcd images gc          # remove old images no revision uses",
    )
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const body = await client().call<{ items: ImageView[] }>("GET", "/api/v1/images");
      out.result(body, () => {
        if (body.items.length === 0) out.line("No images yet: `funcd build DIR` makes one.");
        else out.table(HEADERS, imageRows(body.items));
      });
    });

  images
    .command("rm")
    .description("remove an image no revision uses")
    .argument("<tag>", "the image's tag, e.g. funcd/hello:3f9a0c…")
    .action(async (tag: string, _options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      await client().call("DELETE", `/api/v1/images/${encodeURIComponent(tag)}`);
      out.result({ removed: tag }, () => out.line(`Removed ${tag}`));
    });

  images
    .command("gc")
    .description("remove images no revision uses and unused for longer than the retention period")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextFor(command, deps);
      const body = await client().call<GcView>("POST", "/api/v1/images/gc");
      out.result(body, () => {
        const days = Math.round(body.retentionMs / 86_400_000);
        if (body.removed.length === 0)
          out.line(`Nothing to remove (kept ${body.kept}; retention ${days} days).`);
        else {
          for (const image of body.removed)
            out.line(`Removed ${image.tag ?? image.id} (${formatBytes(image.sizeBytes)})`);
          out.line(`Freed up to ${formatBytes(body.freedBytes)}; kept ${body.kept}.`);
        }
        for (const f of body.failed) out.note(`Could not remove ${f.tag ?? f.id}: ${f.reason}`);
      });
    });
}
