/**
 * Runtime contract cases: finding the handler (file.function, sub-folders), failing to start (exit 3 for
 * the handler, exit 1 for a bad FUNCD_* value), listening on a socket or TCP, and draining on SIGTERM.
 */
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { expect } from "vitest";
import type { RuntimeCase } from "./runtime-conformance.js";
import { freePort, functionDirForTest, invoke, waitFor } from "./runtime-server.js";

export const lifecycleCases = {
  "named-handler": {
    title: "serves a function of another file (helloget.foo)",
    async run(t) {
      const runtime = await t.start("named-export", { handler: "helloget.foo" });
      expect((await invoke(runtime, "/", { method: "PUT", body: "" })).text).toBe("hello PUT");
    },
  },
  "sub-folder-handler": {
    title: "serves a handler file in a sub-folder (lib/fn.main)",
    async run(t) {
      const runtime = await t.start("named-export", { handler: "lib/fn.main" });
      // The fixture answers the name of its own file, so the one the runtime picked shows.
      expect(JSON.parse((await invoke(runtime, "/")).text)).toEqual({
        from: t.handlerFile("named-export", "lib/fn.main"),
      });
    },
  },
  "syntax-error": {
    title: "a handler file with a syntax error exits with code 3 and names the file",
    async run(t) {
      const dir = functionDirForTest(t.source.brokenFunction);
      const runtime = t.spawn({ functionDir: dir });
      expect(await runtime.exit).toEqual({ code: 3, signal: null });
      expect(runtime.stderr()).toContain(path.join(dir, t.source.candidates("handler")[0] ?? ""));
      expect(runtime.stderr()).toContain("SyntaxError");
    },
  },
  "missing-export": {
    title: "a missing function exits with code 3 and lists what the module has",
    async run(t) {
      const runtime = t.spawn({ functionDir: t.fixture("missing-export") });
      expect(await runtime.exit).toEqual({ code: 3, signal: null });
      const stderr = runtime.stderr();
      expect(stderr).toContain('"main"');
      expect(stderr).toContain(path.join(t.fixture("missing-export"), t.handlerFile("missing-export")));
      expect(stderr).toMatch(new RegExp(`its ${t.source.listedAs} are: .*other`));
      expect(stderr).toMatch(new RegExp(`its ${t.source.listedAs} are: .*helper`));
    },
  },
  "missing-export-hint": {
    title: "a missing function suggests --handler with one the module has",
    async run(t) {
      const runtime = t.spawn({ functionDir: t.fixture("missing-export") });
      expect(await runtime.exit).toEqual({ code: 3, signal: null });
      expect(runtime.stderr()).toMatch(/deploy with --handler handler\.(other|helper)\b/);
    },
  },
  "missing-file": {
    title: "a missing handler file exits with code 3 and names what it looked for, and where",
    async run(t) {
      // Any folder will do: none holds nope.*.
      const dir = t.fixture("echo");
      const runtime = t.spawn({ functionDir: dir, handler: "nope.main" });
      expect(await runtime.exit).toEqual({ code: 3, signal: null });
      expect(runtime.stderr()).toContain(
        `none of ${t.source.candidates("nope").join(", ")} exists in ${dir}`,
      );
    },
  },
  "invalid-style": {
    title: "an unknown FUNCD_HANDLER_STYLE exits with code 1 and names the value",
    async run(t) {
      const runtime = t.spawn({ functionDir: t.fixture("lambda"), style: "openwhisk" });
      expect((await runtime.exit).code).toBe(1);
      expect(runtime.stderr()).toContain('FUNCD_HANDLER_STYLE "openwhisk"');
    },
  },
  "invalid-timeout": {
    title: "an invalid FUNCD_TIMEOUT_MS exits with code 1 and names the value",
    async run(t) {
      const runtime = t.spawn({ functionDir: t.fixture("echo"), timeoutMs: 0 });
      expect((await runtime.exit).code).toBe(1);
      expect(runtime.stderr()).toContain('FUNCD_TIMEOUT_MS "0"');
    },
  },
  "sigterm-drain": {
    title: "SIGTERM lets an in-flight request finish, then exits 0 and removes the socket",
    async run(t) {
      const runtime = await t.start("slow");
      // Concurrent requests open several pooled connections; the idle ones must not keep the instance up
      // for their whole keep-alive timeout.
      await Promise.all([1, 2, 3].map(() => invoke(runtime, "/?ms=50")));
      const pending = invoke(runtime, "/?ms=600", { headers: { "x-request-id": "rid-drain" } });
      await waitFor(runtime.stdout, "\x1erid-drain\x1fstarted\n");
      runtime.child.kill("SIGTERM");
      const res = await pending;
      expect(res.status).toBe(200);
      expect(res.text).toBe("slept 600");
      const answered = Date.now();
      expect(await runtime.exit).toEqual({ code: 0, signal: null });
      expect(Date.now() - answered).toBeLessThan(2_000);
      // The socket file is gone with the server, so nothing can connect to a gone instance.
      expect(fs.existsSync(runtime.socketPath)).toBe(false);
    },
  },
  "stale-socket": {
    title: "a socket file left by a killed instance does not stop the next one",
    async run(t) {
      const first = await t.start("echo");
      first.child.kill("SIGKILL");
      await first.exit;
      expect(fs.existsSync(first.socketPath)).toBe(true);
      const second = await t.start("echo", { listen: first.socketPath });
      expect((await invoke(second, "/text")).text).toBe("plain text");
    },
  },
  "tcp-listen": {
    title: "FUNCD_LISTEN as host:port listens on TCP",
    async run(t) {
      const port = await freePort();
      const runtime = t.spawn({ functionDir: t.fixture("echo"), listen: `127.0.0.1:${port}` });
      const deadline = Date.now() + 10_000;
      let status = 0;
      while (status !== 200 && Date.now() < deadline && !runtime.exited()) {
        try {
          const res = await request(`http://127.0.0.1:${port}/healthz`);
          await res.body.dump();
          status = res.statusCode;
        } catch {
          await sleep(10);
        }
      }
      expect(status).toBe(200);
    },
  },
} satisfies Record<string, RuntimeCase>;
