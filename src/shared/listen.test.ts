import { createServer, type Server } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { listenOrExplain, probeListen } from "./listen.js";

async function occupied(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

const setting = (port: number) => ({
  what: "the admin listener",
  host: "127.0.0.1",
  port,
  flag: "--admin-port",
  env: "FUNCD_ADMIN_PORT",
});

describe("listening on a busy port", () => {
  it("listenOrExplain turns EADDRINUSE into PORT_IN_USE naming the address, another funcd and the setting", async () => {
    const port = await occupied();
    const second = createServer();
    const error = await listenOrExplain(
      setting(port),
      () =>
        new Promise<void>((resolve, reject) => {
          second.once("error", reject);
          second.listen(port, "127.0.0.1", resolve);
        }),
    ).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: "PORT_IN_USE", extra: { port } });
    expect((error as Error).message).toBe(
      `Cannot listen on 127.0.0.1:${port} for the admin listener: the port is already in use — another funcd may be running there (stop it), or choose another port with --admin-port PORT (FUNCD_ADMIN_PORT), or 0 for any free port`,
    );
  });

  it("probeListen fails the same way, and leaves a free port free", async () => {
    const port = await occupied();
    await expect(probeListen(setting(port))).rejects.toMatchObject({ code: "PORT_IN_USE" });
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, "127.0.0.1", resolve));
    const freePort = (free.address() as { port: number }).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    await probeListen(setting(freePort));
    await probeListen(setting(freePort)); // closed again after the probe
  });

  it("other errors pass through unchanged", async () => {
    const boom = new Error("boom");
    await expect(listenOrExplain(setting(1), () => Promise.reject(boom))).rejects.toBe(boom);
  });
});
