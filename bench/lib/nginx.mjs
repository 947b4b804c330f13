/**
 * nginx as the reference reverse proxy: one worker (funcd's gateway is one Node thread), keep-alive to
 * the upstream, no access log, no buffering to disk — a plain, reasonably tuned proxy.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { spawnGroup, stopGroup } from "./procs.mjs";
import { freePort } from "./runtimes.mjs";

const NGINX_PATHS = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"];

/** The nginx binary and its version, or undefined when it is not installed. */
export function findNginx() {
  for (const bin of ["nginx", ...NGINX_PATHS]) {
    const probe = spawnSync(bin, ["-v"], { encoding: "utf8" });
    if (!probe.error) return { bin, version: /nginx\/(\S+)/.exec(probe.stderr)?.[1] ?? "?" };
  }
  return undefined;
}

function config(prefix, listenPort, upstreamPort) {
  // Debian's nginx is built with absolute temp paths under /var/lib/nginx; keep everything in `prefix`.
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((k) => `  ${k}_temp_path ${prefix}/${k};`)
    .join("\n");
  return `# written by bench/lib/nginx.mjs
worker_processes 1;
${process.getuid?.() === 0 ? "user root;" : ""}
error_log ${prefix}/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
${temp}
  keepalive_requests 1000000;
  upstream fn {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://fn;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** Starts nginx in front of `127.0.0.1:<upstreamPort>`; resolves when a request through it succeeds. */
export async function startNginx(nginx, upstreamPort) {
  const prefix = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  const listenPort = await freePort();
  const conf = path.join(prefix, "nginx.conf");
  writeFileSync(conf, config(prefix, listenPort, upstreamPort));
  const child = spawnGroup(nginx.bin, ["-p", prefix, "-c", conf, "-g", "daemon off;"], {});
  const url = `http://127.0.0.1:${listenPort}/`;
  const stop = async () => {
    await stopGroup(child, { signal: "SIGTERM", graceMs: 3_000 });
    rmSync(prefix, { recursive: true, force: true });
  };
  try {
    for (let tries = 0; ; tries++) {
      if (child.exitCode !== null) throw new Error(`nginx exited: ${child.output()}`);
      let res;
      try {
        res = await request(url);
      } catch (err) {
        if (tries > 500) throw new Error(`nginx did not start: ${err.message} ${child.output()}`);
        await sleep(10);
        continue;
      }
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`nginx answered ${res.statusCode}: ${child.output()}`);
      break;
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, pid: child.pid, stop };
}
