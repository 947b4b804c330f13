/** Which user a container of an image runs as: shared by the Docker and swarm drivers. */

/** The user a container runs as when its image would run it as root. */
export const FALLBACK_USER = "10001:10001";

/** True when an image's `USER` would run the container as root (unset, `root`, `0`, `0:…`, `root:…`). */
export function isRootUser(user: string | undefined): boolean {
  const name = (user ?? "").trim().split(":")[0] ?? "";
  return name === "" || name === "root" || name === "0";
}

/** The user a container runs as: the image's own when it is not root, else `FALLBACK_USER`. */
export function containerUser(imageUser: string | undefined): string {
  return isRootUser(imageUser) ? FALLBACK_USER : (imageUser as string).trim();
}
