import { execFile } from "node:child_process";

/**
 * Whether the kernel's log records an OOM kill in the memory cgroup of a container (`oom_memcg=…/<id>`).
 *
 * Why: some engine/kernel pairs never tell the engine about an OOM kill — Debian's dockerd 20.10 on a
 * cgroup v1 host with a 6.x kernel reports `OOMKilled: false`, exit 137, for a container the kernel killed
 * at its memory limit — and the kernel's own line is the only record left once the cgroup is gone.
 * Reading the log needs root (kernel.dmesg_restrict); `undefined` means it could not be read.
 */
export async function kernelLoggedOomKill(containerId: string): Promise<boolean | undefined> {
  const log = await new Promise<string | undefined>((resolve) => {
    execFile("dmesg", [], { maxBuffer: 16 * 1024 * 1024, timeout: 2_000 }, (err, stdout) =>
      resolve(err ? undefined : stdout),
    );
  });
  if (log === undefined) return undefined;
  return log.split("\n").some((line) => line.includes("oom_memcg=") && line.includes(containerId));
}
