import { type FSWatcher, watch } from "node:fs";
import { SKIPPED_DIRS } from "./pack.js";

/**
 * Calls `onChange` once per burst of file changes under `dir` (editors write a
 * file in several steps; one redeploy per save is what a user expects).
 * Changes under node_modules/.git are ignored, as the deploy never ships them.
 * Returns a function that stops watching.
 */
export function watchFolder(dir: string, onChange: (files: string[]) => void, debounceMs = 120): () => void {
  let timer: NodeJS.Timeout | undefined;
  let changed = new Set<string>();
  const watcher: FSWatcher = watch(dir, { recursive: true }, (_event, file) => {
    const name = file?.toString() ?? "";
    if (name.split("/").some((part) => SKIPPED_DIRS.has(part))) return;
    changed.add(name);
    clearTimeout(timer);
    timer = setTimeout(() => {
      const files = [...changed];
      changed = new Set();
      onChange(files);
    }, debounceMs);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
