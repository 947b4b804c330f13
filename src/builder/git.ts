/**
 * Fetching a function's code from git: Debian's `git` as a child process (a shallow fetch of one ref into
 * a throwaway bare repository, then `git archive` of the function's folder), so the code goes through the
 * same archive checks as an upload (paths, links, sizes).
 *
 * Plain `execFile` rather than simple-git: three commands, and what matters is full control of argv and
 * environment — credentials must never be in a URL, an argument (visible in `ps`) or a log. A token goes
 * in as an `http.extraHeader` through `GIT_CONFIG_*` environment variables; an SSH key as a 0600 file
 * named in `GIT_SSH_COMMAND`. The child gets an explicit environment, never the daemon's.
 */
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { FuncdError } from "../shared/errors.js";
import { type CodeFile, filesFromArchive } from "./code.js";

export interface GitSource {
  url: string;
  ref?: string | undefined;
  dir?: string | undefined;
}

export interface FetchedCode {
  files: CodeFile[];
  /** The commit the files come from (full sha). */
  commit: string;
}

export interface GitFetchOptions {
  /** A token (sent as HTTP basic auth) or an SSH private key (PEM/OpenSSH text). */
  credential?: Buffer | undefined;
  maxBytes: number;
  /** Killed after this long. */
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

/** Removes anything that looks like credentials from git's output (a user:password@ in a URL). */
export function redact(text: string, secret?: string): string {
  let out = text.replace(/(\w+:\/\/)[^/@\s]+@/g, "$1***@");
  if (secret && secret.length >= 4) out = out.split(secret).join("***");
  return out;
}

export async function fetchGitSource(source: GitSource, options: GitFetchOptions): Promise<FetchedCode> {
  const work = await mkdtemp(path.join(tmpdir(), "funcd-git-"));
  const secretText = options.credential?.toString("utf8").trim();
  const env: Record<string, string> = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: work,
    LANG: "C",
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ASKPASS: "/bin/false",
    GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
  };
  try {
    if (secretText) {
      if (secretText.includes("PRIVATE KEY")) {
        const keyFile = path.join(work, "key");
        await writeFile(keyFile, `${secretText}\n`, { mode: 0o600 });
        await chmod(keyFile, 0o600);
        env.GIT_SSH_COMMAND = `ssh -i ${keyFile} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${path.join(work, "known_hosts")}`;
      } else {
        const basic = Buffer.from(`x-access-token:${secretText}`).toString("base64");
        env.GIT_CONFIG_COUNT = "1";
        env.GIT_CONFIG_KEY_0 = "http.extraHeader";
        env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
      }
    }
    const repo = path.join(work, "repo.git");
    const git = (args: string[], encoding: "utf8" | "buffer" = "utf8") =>
      run(["--git-dir", repo, ...args], env, options.timeoutMs ?? 120_000, encoding, secretText);
    await run(["init", "--quiet", "--bare", repo], env, 30_000, "utf8", secretText);
    const ref = source.ref ?? "HEAD";
    options.onProgress?.(`git: fetching ${redact(source.url)} ${ref}`);
    try {
      await git(["fetch", "--quiet", "--depth", "1", "--no-tags", source.url, ref]);
    } catch (err) {
      throw new FuncdError(
        "GIT_FAILED",
        `Cannot fetch ${ref} from ${redact(source.url)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const commit = String(await git(["rev-parse", "FETCH_HEAD^{commit}"])).trim();
    const dir = (source.dir ?? "").replace(/^\/+|\/+$/g, "");
    const tree = dir === "" ? commit : `${commit}:${dir}`;
    // `<commit>:<dir>` names the folder's tree; anything else (a file, nothing) is not a function folder.
    const kind = await git(["cat-file", "-t", tree]).catch(() => "missing");
    if (String(kind).trim() !== "tree") {
      throw new FuncdError(
        "GIT_FAILED",
        `Commit ${commit.slice(0, 12)} of ${redact(source.url)} has no folder "${dir}"`,
      );
    }
    const archive = (await git(["archive", "--format=tar.gz", tree], "buffer")) as Buffer;
    const files = await filesFromArchive(archive, { maxBytes: options.maxBytes });
    options.onProgress?.(`git: ${ref} is ${commit.slice(0, 12)} (${files.length} files)`);
    return { files, commit };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function run(
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  encoding: "utf8" | "buffer",
  secret: string | undefined,
): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      { env, timeout: timeoutMs, encoding, maxBuffer: 256 * 1024 * 1024, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        if (err) {
          const text = String(stderr).trim().split("\n").slice(-3).join(" ") || err.message;
          reject(new Error(redact(text, secret)));
          return;
        }
        resolve(stdout);
      },
    );
  });
}
