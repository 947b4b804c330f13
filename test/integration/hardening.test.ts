import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, nodeFunction, removeDir, startDaemon } from "../helpers/daemon.js";

let daemon: Daemon;

beforeAll(async () => {
  daemon = await startDaemon();
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
});

/** A ustar header for one regular file of `size` bytes (sizes past 8 GiB would need base-256). */
function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\0" + "00", 257);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return header;
}

/**
 * A gzip bomb: a tar of one file of `gib` GiB of zeros, about 1 MB per GiB once compressed. Built from
 * concatenated gzip members (one 16 MiB block compressed once and repeated) so the test does not
 * have to deflate gigabytes itself; gunzip reads the members as one stream.
 */
function gzipBomb(gib: number): Buffer {
  const size = gib * 1024 ** 3;
  const block = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 });
  const parts = [gzipSync(tarHeader("handler.js", size))];
  for (let i = 0; i < size / (16 * 1024 * 1024); i++) parts.push(block);
  return Buffer.concat(parts);
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

describe("archive bombs", () => {
  it("a gzip bomb is refused with 413 problem+json while the daemon keeps answering, and memory stays low", async () => {
    const archive = gzipBomb(2).toString("base64");
    const upload = daemon.api("PUT", "/api/v1/functions/bomb", { runtime: "nodejs20", archive });
    // Other requests are served while the upload is being inflated (the inflate must not hold the event loop).
    let healthyWhileInflating = 0;
    let uploadDone = false;
    void upload.finally(() => {
      uploadDone = true;
    });
    while (!uploadDone) {
      const started = Date.now();
      const health = await daemon.call("GET", "/healthz");
      expect(health.status).toBe(200);
      // Generous: the stall this guards against lasted 7–20 s.
      expect(Date.now() - started).toBeLessThan(3_000);
      healthyWhileInflating++;
    }
    const res = await upload;
    expect(res.status).toBe(413);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json()).toMatchObject({
      code: "PAYLOAD_TOO_LARGE",
      type: "https://funcd.dev/errors#payload-too-large",
    });
    expect(res.json<{ detail: string }>().detail).toMatch(/unpacks to more than/);
    expect(healthyWhileInflating).toBeGreaterThan(0);
    const pid = daemon.process.pid;
    if (pid === undefined) throw new Error("no daemon pid");
    expect(rssMiB(pid)).toBeLessThan(600);
    const list = await daemon.api("GET", "/api/v1/functions");
    expect(list.json<{ items: { name: string }[] }>().items.map((f) => f.name)).not.toContain("bomb");
    // And a normal deploy still works afterwards.
    const ok = await daemon.api("PUT", "/api/v1/functions/after-bomb", {
      runtime: "nodejs20",
      files: nodeFunction("module.exports = { main: () => 'ok' };"),
    });
    expect(ok.status).toBeLessThan(300);
  });
});

describe("hostile spec values", () => {
  const hello = nodeFunction("module.exports = { main: () => 'hi' };");

  it.each([
    ["a NUL byte in an env value", { env: { GREETING: "a\0b" } }, /GREETING.*control character U\+0000/],
    ["an escape in an env value", { env: { GREETING: "\x1b[2J" } }, /GREETING.*control character U\+001B/],
    ["the route /./api", { routes: ["/./api"] }, /empty or dot segment/],
    ["the route /x/../api", { routes: ["/x/../api"] }, /empty or dot segment/],
    ["the route //api", { routes: ["//api"] }, /empty or dot segment/],
    ["a route listed twice", { routes: ["/twice", "/twice"] }, /listed twice/],
  ])("%s is refused with 400 problem+json and nothing is deployed", async (_what, spec, detail) => {
    const res = await daemon.api("PUT", "/api/v1/functions/hostile", {
      runtime: "nodejs20",
      ...spec,
      files: hello,
    });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json()).toMatchObject({ code: "VALIDATION_FAILED" });
    expect(res.json<{ detail: string }>().detail).toMatch(detail);
    const got = await daemon.api("GET", "/api/v1/functions/hostile");
    expect(got.status).toBe(404);
  });
});

describe("error shapes", () => {
  it("a bad secret name is not called a function name", async () => {
    const res = await daemon.api("PUT", "/api/v1/secrets/Bad!Name", { value: "x" });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json<{ title: string }>().title).not.toMatch(/function/i);
  });

  it("a files map with a file/folder clash is a 400 naming the path, without internal paths", async () => {
    const res = await daemon.api("PUT", "/api/v1/functions/clash", {
      runtime: "nodejs20",
      files: { "handler.js": "module.exports = { main: () => 1 };", lib: "x", "lib/a.js": "y" },
    });
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ code: "INVALID_ARCHIVE" });
    expect(res.text).not.toContain(daemon.dataDir);
    expect(res.text).not.toContain("EEXIST");
  });
});

describe("methods", () => {
  it("a method an API path does not take is a 405 problem+json with Allow", async () => {
    const res = await daemon.api("PATCH", "/api/v1/functions");
    expect(res.status).toBe(405);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json()).toMatchObject({ code: "METHOD_NOT_ALLOWED" });
    expect(String(res.headers.allow)).toContain("GET");
    const one = await daemon.api("POST", "/api/v1/functions/some-name/not-a-thing");
    expect(one.status).toBe(404);
  });
});
