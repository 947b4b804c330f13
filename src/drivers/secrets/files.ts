/**
 * Secret files on the host: one folder per instance holding one file per secret, on a tmpfs (memory,
 * never the data dir's disk), which the driver mounts read-only at `/var/secrets`. The folder is 0500 and
 * each file 0400, owned by the uid the instance runs as, so the function can read them and nothing else
 * on the host (but root) can.
 *
 * Layout: `<tmpfs>/funcd-secrets-<key>/<instanceId>/<secret name>`, where `<key>` is unique per daemon
 * (a hash of its data dir) and `<tmpfs>` the first of `/run`, `$XDG_RUNTIME_DIR`, `/dev/shm` that is a
 * tmpfs.
 */
import { chmod, chown, lstat, mkdir, readdir, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { SECRET_NAME } from "../../shared/secret-names.js";

/** Where an instance sees its secrets. */
export const SECRETS_MOUNT = "/var/secrets";

/**
 * Who owns an instance's secret files: the uid (and gid) its processes run as, or `anyone` when that
 * uid is not known on the host (a container image with a named `USER`): the files are then readable by
 * all, the base folder (0700) keeping everyone on the host but root out.
 */
export type SecretOwner = { uid: number; gid: number } | "anyone";

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** True when `dir` is on a file system that lives in memory. */
async function inMemory(dir: string): Promise<boolean> {
  try {
    const { type } = await statfs(dir);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * The folder this daemon's secret folders go in (not created): on the first memory file system among
 * the candidates. Rejects when there is none, because secrets must not land on a disk.
 */
export async function findSecretsBase(
  key: string,
  env: Record<string, string | undefined> = process.env,
): Promise<string> {
  const candidates = ["/run", env.XDG_RUNTIME_DIR, "/dev/shm"].filter(
    (dir): dir is string => dir?.startsWith("/") === true,
  );
  for (const dir of candidates) {
    if (await inMemory(dir)) return join(dir, `funcd-secrets-${key}`);
  }
  throw new FuncdError(
    "SANDBOX_UNAVAILABLE",
    `Cannot deliver secrets: none of ${candidates.join(", ")} is a tmpfs, and secret files are never written to disk`,
  );
}

/**
 * Creates the base folder (mode 0700, or 0711 when instance uids must pass through it to reach their
 * own folder) and checks that it is a real folder of this user: in a world-writable `/dev/shm`, someone
 * else could have put a link or folder of theirs at that name first.
 */
export async function ensureSecretsBase(base: string, traversable: boolean): Promise<void> {
  await mkdir(base, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  const stat = await lstat(base);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) {
    throw new FuncdError(
      "SANDBOX_UNAVAILABLE",
      `Cannot deliver secrets: ${base} exists but is not a folder owned by funcd's user (uid ${uid}); remove it`,
    );
  }
  await chmod(base, traversable ? 0o711 : 0o700);
}

/**
 * Writes an instance's secret files into `<base>/<instanceId>/` (replacing a leftover of that name) and
 * returns the folder. Files 0400 and the folder 0500, owned by `owner` when given. When the daemon may
 * not give files away (it is not root), they are made readable by all instead — the base folder keeps
 * everyone but the instance out.
 */
export async function writeSecretFiles(
  base: string,
  instanceId: string,
  secrets: Readonly<Record<string, Uint8Array>>,
  owner: SecretOwner | undefined,
): Promise<string> {
  const dir = join(base, instanceId);
  await removeSecretFiles(dir);
  await mkdir(dir, { mode: 0o700 });
  try {
    for (const [name, value] of Object.entries(secrets)) {
      // Names were checked by the spec; checked again because a name becomes a path here.
      if (!SECRET_NAME.test(name)) throw new FuncdError("BAD_REQUEST", `"${name}" is not a secret name`);
      await writeFile(join(dir, name), value, { mode: 0o400, flag: "wx" });
    }
    let fileMode = owner === "anyone" ? 0o444 : 0o400;
    let dirMode = owner === "anyone" ? 0o555 : 0o500;
    if (owner !== undefined && owner !== "anyone" && owner.uid !== process.getuid?.()) {
      try {
        for (const name of Object.keys(secrets)) await chown(join(dir, name), owner.uid, owner.gid);
        await chown(dir, owner.uid, owner.gid);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
        fileMode = 0o444;
        dirMode = 0o555;
      }
    }
    for (const name of Object.keys(secrets)) await chmod(join(dir, name), fileMode);
    await chmod(dir, dirMode);
    return dir;
  } catch (err) {
    await removeSecretFiles(dir);
    throw err instanceof FuncdError
      ? err
      : new FuncdError("SANDBOX_UNAVAILABLE", `Cannot write the secret files in ${dir}: ${messageOf(err)}`, {
          cause: err,
        });
  }
}

/** Removes an instance's secret folder (made writable first: a non-root daemon cannot empty a 0500 one). */
export async function removeSecretFiles(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

/** The instance folders in the base (none when it does not exist). */
export async function listSecretFolders(base: string): Promise<string[]> {
  return readdir(base).catch(() => []);
}
