/**
 * Git deploy to first response: a Node function fetched from a git repository served by `git daemon` on
 * loopback (shallow fetch + `git archive` + deploy) against the same files uploaded as a files map, in the
 * same daemon and run. Each run is a new function (and, for git, a new commit), so nothing is cached.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startDaemon } from "./lib/daemon.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { ms, ratio, summarize } from "./lib/stats.mjs";

export const name = "git-deploy";
export const title = "Git-sourced deploy vs uploaded folder (deploy → first response)";

const GIT_ENV = {
  PATH: "/usr/bin:/bin",
  HOME: os.tmpdir(),
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@example.invalid",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@example.invalid",
};
const git = (cwd, ...args) => execFileSync("git", args, { cwd, env: GIT_ENV, encoding: "utf8" }).trim();
const handler = (i) => `module.exports = { main: () => "hello ${i}" };\n`;

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function firstResponse(daemon, fnName, started) {
  for (let tries = 0; ; tries++) {
    const res = await daemon.invoke(`/function/${fnName}`);
    if (res.status === 200) return performance.now() - started;
    if (tries > 300) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
    await sleep(10);
  }
}

export async function run({ quick, log }) {
  const runs = quick ? 2 : 7;
  const cleanup = cleanupStack();
  const root = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-git-"));
  cleanup.defer(() => rmSync(root, { recursive: true, force: true }));
  const raw = { runs, upload: [], git: [] };
  try {
    const bare = path.join(root, "srv", "fns.git");
    mkdirSync(path.dirname(bare), { recursive: true });
    git(root, "init", "-q", "--bare", "-b", "main", bare);
    const work = path.join(root, "work");
    git(root, "init", "-q", "-b", "main", work);
    git(work, "remote", "add", "origin", bare);
    const port = await freePort();
    const daemonProc = spawn(
      "git",
      [
        "daemon",
        "--reuseaddr",
        "--export-all",
        "--listen=127.0.0.1",
        `--port=${port}`,
        `--base-path=${path.join(root, "srv")}`,
        path.join(root, "srv"),
      ],
      { env: GIT_ENV, stdio: "ignore" },
    );
    cleanup.defer(() => daemonProc.kill());
    await sleep(300);
    const daemon = await startDaemon({ env: { FUNCD_LOG_LEVEL: "error" } });
    cleanup.defer(daemon.stop);
    for (let i = 0; i < runs; i++) {
      // Upload: the files map, as `funcd deploy` sends it (packed), new content each run.
      log(`upload ${i + 1}/${runs}`);
      let started = performance.now();
      await daemon.deploy(`up-${i}`, { files: { "handler.js": handler(`up-${i}`) } });
      raw.upload.push(await firstResponse(daemon, `up-${i}`, started));
      // Git: a new commit, then a deploy naming the repository (fetch + archive + the same deploy).
      mkdirSync(path.join(work, "fn"), { recursive: true });
      writeFileSync(path.join(work, "fn", "handler.js"), handler(`git-${i}`));
      git(work, "add", "-A");
      git(work, "commit", "-q", "-m", `run ${i}`);
      git(work, "push", "-q", "origin", "HEAD:main");
      log(`git ${i + 1}/${runs}`);
      started = performance.now();
      await daemon.deploy(`git-${i}`, {
        source: { git: { url: `git://127.0.0.1:${port}/fns.git`, ref: "main", dir: "fn" } },
      });
      raw.git.push(await firstResponse(daemon, `git-${i}`, started));
    }
  } finally {
    await cleanup.run();
  }
  const upload = summarize(raw.upload);
  const fromGit = summarize(raw.git);
  return {
    summary: [
      {
        target: "git deploy → first response vs an uploaded folder, median",
        measured: `${ms(fromGit.median)} vs ${ms(upload.median)} (${ratio(fromGit.median, upload.median)})`,
        met: undefined,
      },
    ],
    sections: [
      {
        table: {
          header: ["case", "median", "max", "vs baseline"],
          rows: [
            ["uploaded files (baseline)", ms(upload.median), ms(upload.max), "1.00×"],
            [
              "git:// on loopback (shallow fetch + archive)",
              ms(fromGit.median),
              ms(fromGit.max),
              ratio(fromGit.median, upload.median),
            ],
          ],
        },
        notes: [
          `${runs} runs, interleaved (upload, then git), each a new function; the git repository is served by git daemon on 127.0.0.1 and gets a new commit before each git deploy.`,
          "Measured from sending PUT /api/v1/functions/<name> until the function's first 200.",
        ],
      },
    ],
    raw,
  };
}
