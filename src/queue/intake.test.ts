import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FuncdError, isFuncdError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { ManualClock } from "../shared/manual-clock.js";
import type { NewQueueItem, QueueRepo } from "../store/types.js";
import { parseCallbackUrl, parseRetries, QueueIntake } from "./intake.js";

describe("parseCallbackUrl", () => {
  it("accepts absolute http(s) URLs and nothing", () => {
    expect(parseCallbackUrl(undefined)).toBeNull();
    expect(parseCallbackUrl(" ")).toBeNull();
    expect(parseCallbackUrl("http://127.0.0.1:9000/done")).toBe("http://127.0.0.1:9000/done");
    expect(parseCallbackUrl(["https://example.com/x?y=1"])).toBe("https://example.com/x?y=1");
  });

  it.each(["/relative", "ftp://example.com/x", "file:///etc/passwd", "not a url"])("refuses %s", (value) => {
    try {
      parseCallbackUrl(value);
      expect.unreachable();
    } catch (err) {
      expect(isFuncdError(err, "INVALID_CALLBACK_URL")).toBe(true);
      expect((err as FuncdError).message).toContain(value);
    }
  });
});

describe("parseRetries", () => {
  it("takes 0–10 and falls back to the default", () => {
    expect(parseRetries(undefined, 2)).toBe(2);
    expect(parseRetries("0", 2)).toBe(0);
    expect(parseRetries("10", 2)).toBe(10);
    for (const bad of ["11", "-1", "1.5", "two"]) expect(() => parseRetries(bad, 2)).toThrow(FuncdError);
  });
});

describe("QueueIntake", () => {
  let server: http.Server;
  let url: string;
  const batches: NewQueueItem[][] = [];
  let failing = false;

  beforeEach(async () => {
    batches.length = 0;
    failing = false;
    const queue = {
      enqueueMany(items: NewQueueItem[]) {
        if (failing) throw new Error("SQLITE_FULL: database or disk is full");
        batches.push(items);
        // A commit blocks the loop as SQLite's does (an fsync): requests read meanwhile join the next batch.
        const until = Date.now() + 5;
        while (Date.now() < until) {}
      },
    } as unknown as QueueRepo;
    const intake = new QueueIntake({
      queue,
      clock: new ManualClock(),
      logger: createLogger("silent"),
      maxBodyBytes: 1024,
      defaultRetries: 2,
      onEnqueued: () => {},
    });
    let n = 0;
    server = http.createServer((req, res) =>
      intake.accept(req, res, {
        match: { functionName: "fn", subPath: "/sub", prefix: "/function/fn" },
        search: "?q=1",
        requestId: `req-${++n}`,
        executionId: `exec-${n}`,
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("answers 202 with the execution id and Location once the request is stored", async () => {
    const res = await request(`${url}/anything`, {
      method: "PUT",
      body: "hello",
      headers: {
        "x-callback-url": "http://127.0.0.1:1/cb",
        "x-funcd-retries": "5",
        authorization: "Bearer s",
      },
    });
    expect(res.statusCode).toBe(202);
    const body = (await res.body.json()) as Record<string, string>;
    expect(body).toEqual({ executionId: "exec-1", status: "queued", location: "/api/v1/executions/exec-1" });
    expect(res.headers.location).toBe("/api/v1/executions/exec-1");
    const [stored] = batches.flat();
    expect(stored).toMatchObject({
      id: "exec-1",
      functionName: "fn",
      method: "PUT",
      path: "/sub?q=1",
      requestId: "req-1",
      callbackUrl: "http://127.0.0.1:1/cb",
      maxRetries: 5,
    });
    expect(stored?.body?.toString()).toBe("hello");
    expect(stored?.headers).toMatchObject({ "x-request-id": "req-1", "x-forwarded-prefix": "/function/fn" });
    expect(stored?.headers["x-callback-url"]).toBeUndefined();
    expect(stored?.headers["x-funcd-retries"]).toBeUndefined();
    expect(stored?.request.headers.authorization).toBe("[redacted]");
    expect(stored?.headers.authorization).toBe("Bearer s");
  });

  it("commits requests that arrive while a commit runs together in the next one", async () => {
    // Raw sockets, all connected first and written in one go, so the requests arrive together.
    const { port } = server.address() as AddressInfo;
    // Wait until the server has accepted every connection (not a fixed sleep: under load accepting can lag), so
    // that all the requests are readable in the same loop turn.
    let accepted = 0;
    const allAccepted = new Promise<void>((resolve) => {
      server.on("connection", () => {
        accepted += 1;
        if (accepted === 40) resolve();
      });
    });
    const sockets = await Promise.all(
      Array.from(
        { length: 40 },
        () =>
          new Promise<net.Socket>((resolve) => {
            const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
          }),
      ),
    );
    const answers = sockets.map(
      (socket) =>
        new Promise<string>((resolve) => {
          let text = "";
          socket.on("data", (d: Buffer) => {
            text += d.toString();
            if (text.includes("\r\n\r\n")) resolve(text.slice(0, 12));
          });
        }),
    );
    await allAccepted;
    for (const socket of sockets) {
      socket.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    }
    expect(await Promise.all(answers)).toEqual(Array(40).fill("HTTP/1.1 202"));
    for (const socket of sockets) socket.destroy();
    expect(batches.flat()).toHaveLength(40);
    expect(batches.length).toBeLessThan(20);
  });

  it("refuses a body over the limit with 413 and stores nothing", async () => {
    const res = await request(`${url}/`, { method: "POST", body: Buffer.alloc(2048) });
    expect(res.statusCode).toBe(413);
    expect(((await res.body.json()) as { code: string }).code).toBe("PAYLOAD_TOO_LARGE");
    expect(batches).toEqual([]);
  });

  it("refuses a bad callback URL with 400", async () => {
    const res = await request(`${url}/`, {
      method: "POST",
      body: "x",
      headers: { "x-callback-url": "ftp://x/y" },
    });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { code: string }).code).toBe("INVALID_CALLBACK_URL");
  });

  it("answers 503 QUEUE_UNAVAILABLE when the store cannot take the request", async () => {
    failing = true;
    const res = await request(`${url}/`, { method: "POST", body: "x" });
    expect(res.statusCode).toBe(503);
    const problem = (await res.body.json()) as { code: string; detail: string };
    expect(problem.code).toBe("QUEUE_UNAVAILABLE");
    expect(problem.detail).toContain("database or disk is full");
  });
});
