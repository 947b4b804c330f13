/**
 * Images every node of the swarm can run: a local image (built by the image builder on the manager's
 * engine) pushed to the `registry` setting, referenced by digest so every task runs the same bytes; and,
 * for buildless functions, a thin code image — the runtime image plus the function's folder at
 * /function — since a node cannot mount a folder that lives on the daemon's machine.
 */
import { createHash } from "node:crypto";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import type Docker from "dockerode";
import { create as tar } from "tar";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { LABELS } from "../common/engine.js";

interface ProgressEvent {
  error?: string;
  errorDetail?: { message?: string };
  status?: string;
  stream?: string;
  aux?: { Digest?: string; Tag?: string };
}

/** Follows an engine progress stream (push, build) to its end; resolves to its events. */
function follow(docker: Docker, stream: NodeJS.ReadableStream): Promise<ProgressEvent[]> {
  return new Promise((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, events: ProgressEvent[]) =>
      err ? reject(err) : resolve(events),
    ),
  );
}

/** The repository path an image gets in the registry: its local name without a registry host. */
export function registryRef(registry: string, local: string): { repo: string; tag: string } {
  const at = local.lastIndexOf(":");
  const slash = local.lastIndexOf("/");
  const name = at > slash ? local.slice(0, at) : local;
  const tag = at > slash ? local.slice(at + 1) : "latest";
  const parts = name.split("/");
  // A first part with a dot or a port is a registry host: not part of the repository path.
  if (parts.length > 1 && /[.:]/.test(parts[0] ?? "")) parts.shift();
  return { repo: `${registry}/${parts.join("/").toLowerCase()}`, tag };
}

export class RegistryImages {
  /** Local image → its digest reference, pushed once per daemon run (tags are content hashes). */
  private readonly pushes = new Map<string, Promise<string>>();
  private readonly codeImages = new Map<string, Promise<string>>();

  constructor(
    private readonly docker: Docker,
    private readonly registry: string,
    private readonly daemonId: string,
    private readonly workDir: string,
  ) {}

  /** Pushes `local` to the registry (once); resolves to `registry/repo@sha256:…`. */
  pushed(local: string): Promise<string> {
    let pending = this.pushes.get(local);
    if (pending === undefined) {
      pending = this.push(local);
      const kept = pending;
      kept.catch(() => {
        if (this.pushes.get(local) === kept) this.pushes.delete(local);
      });
      this.pushes.set(local, pending);
    }
    return pending;
  }

  private async push(local: string): Promise<string> {
    const { repo, tag } = registryRef(this.registry, local);
    const refused = (why: string, cause?: unknown) =>
      new FuncdError(
        "REGISTRY_UNAVAILABLE",
        `Cannot push image "${local}" to the registry ${this.registry}: ${why}. Check that the registry answers (curl http://${this.registry}/v2/) and that every engine lists it as a registry it may use`,
        cause === undefined ? {} : { cause },
      );
    try {
      await this.docker.getImage(local).tag({ repo, tag });
      // The engine wants an X-Registry-Auth header even for a registry without auth: an empty one.
      const stream = await this.docker
        .getImage(`${repo}:${tag}`)
        .push({ authconfig: { serveraddress: this.registry } });
      const events = await follow(this.docker, stream);
      const failed = events.find((e) => e.error !== undefined || e.errorDetail !== undefined);
      if (failed) throw refused(failed.error ?? failed.errorDetail?.message ?? "push failed");
      const digest =
        events.find((e) => e.aux?.Digest)?.aux?.Digest ??
        /digest: (sha256:[0-9a-f]{64})/.exec(events.map((e) => e.status ?? "").join("\n"))?.[1];
      if (digest === undefined) throw refused("the registry answered without a digest");
      return `${repo}@${digest}`;
    } catch (err) {
      if (err instanceof FuncdError) throw err;
      throw refused(messageOf(err), err);
    }
  }

  /**
   * A thin image of a buildless function: `runtimeImage` with `artifactDir` copied to /function, tagged
   * by a hash of both (so a redeploy of the same code reuses it). Resolves to the local tag.
   */
  codeImage(runtimeImage: string, artifactDir: string): Promise<string> {
    const key = `${runtimeImage}\0${artifactDir}`;
    let pending = this.codeImages.get(key);
    if (pending === undefined) {
      pending = this.buildCodeImage(runtimeImage, artifactDir);
      const kept = pending;
      kept.catch(() => {
        if (this.codeImages.get(key) === kept) this.codeImages.delete(key);
      });
      this.codeImages.set(key, pending);
    }
    return pending;
  }

  private async buildCodeImage(runtimeImage: string, artifactDir: string): Promise<string> {
    const runtime = await this.docker.getImage(runtimeImage).inspect();
    const tag = `funcd-code:${(await treeHash(artifactDir, runtime.Id)).slice(0, 24)}`;
    const have = await this.docker
      .getImage(tag)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    if (have) return tag;
    const context = await mkdtemp(join(this.workDir, "code-"));
    try {
      await cp(artifactDir, join(context, "function"), { recursive: true });
      await writeFile(join(context, "Dockerfile"), `FROM ${runtime.Id}\nCOPY function/ /function/\n`);
      const archive = tar({ cwd: context, portable: true }, ["."]) as unknown as NodeJS.ReadableStream;
      const stream = await this.docker.buildImage(archive, {
        t: tag,
        labels: { [LABELS.managed]: "true", [LABELS.daemon]: this.daemonId, [LABELS.kind]: "code" },
        rm: true,
        forcerm: true,
      });
      const events = await follow(this.docker, stream);
      const failed = events.find((e) => e.error !== undefined);
      if (failed) {
        throw new FuncdError("IMAGE_BUILD_FAILED", `Building the code image ${tag} failed: ${failed.error}`);
      }
      return tag;
    } finally {
      await rm(context, { recursive: true, force: true });
    }
  }
}

/** A hash of a folder's file names and contents (and `salt`). */
async function treeHash(dir: string, salt: string): Promise<string> {
  const hash = createHash("sha256").update(salt);
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const file of files) {
    hash
      .update(relative(dir, file))
      .update("\0")
      .update(await readFile(file))
      .update("\0");
  }
  return hash.digest("hex");
}
