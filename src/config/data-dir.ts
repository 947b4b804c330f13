import os from "node:os";
import path from "node:path";

/** Where a daemon run as root keeps its data when no data dir is chosen (see `defaultDataDir`). */
export const ROOT_DATA_DIR = "/var/lib/funcd";

/**
 * The data dir when none is chosen: `$XDG_DATA_HOME/funcd`, else `~/.local/share/funcd` — except for
 * root without `XDG_DATA_HOME`, which gets `/var/lib/funcd`. A root daemon runs sandboxed functions as
 * their own uids, which must walk to their files in the data dir; root's home is usually 0700, and funcd
 * does not change modes outside its data dir, while `/var/lib` is searchable by everyone.
 */
export function defaultDataDir(
  env: NodeJS.ProcessEnv,
  home: string = os.homedir(),
  uid: number | undefined = process.getuid?.(),
): string {
  if (env.XDG_DATA_HOME) return path.join(env.XDG_DATA_HOME, "funcd");
  if (uid === 0) return ROOT_DATA_DIR;
  return path.join(home, ".local", "share", "funcd");
}
