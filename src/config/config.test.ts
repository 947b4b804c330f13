import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import type { FuncdError } from "../shared/errors.js";
import { defaultDataDir, envName, loadConfig } from "./config.js";

describe("config", () => {
  it("defaults to port 8080 on loopback with the data dir under XDG_DATA_HOME", () => {
    const config = loadConfig({ env: { XDG_DATA_HOME: "/srv/data" } });
    expect(config.port).toBe(8080);
    expect(config.host).toBe("127.0.0.1");
    expect(config.dataDir).toBe("/srv/data/funcd");
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("takes file < FUNCD_* env < flags, in that order", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-config-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "funcd.config.yaml");
    writeFileSync(file, "port: 7000\nhost: 0.0.0.0\nlogLevel: debug\n");
    const config = loadConfig({
      file,
      env: { FUNCD_PORT: "7001", FUNCD_DATA_DIR: dir },
      flags: { port: "7002" },
    });
    expect(config.port).toBe(7002);
    expect(config.host).toBe("0.0.0.0");
    expect(config.logLevel).toBe("debug");
    expect(config.dataDir).toBe(dir);
  });

  it("puts the admin listener on port + 1 unless told otherwise, and on a free port when port is 0", () => {
    const env = { FUNCD_DATA_DIR: "/tmp/x" };
    expect(loadConfig({ env }).adminPort).toBe(8081);
    expect(loadConfig({ env, flags: { port: "9000" } }).adminPort).toBe(9001);
    expect(loadConfig({ env, flags: { port: "0" } }).adminPort).toBe(0);
    expect(loadConfig({ env: { ...env, FUNCD_ADMIN_PORT: "7777" } }).adminPort).toBe(7777);
    expect(loadConfig({ env, flags: { port: "9000", adminPort: "0" } }).adminPort).toBe(0);
    const problemOf = (flags: Record<string, string>) => {
      try {
        loadConfig({ env, flags });
      } catch (err) {
        return String((err as FuncdError).extra.errors);
      }
      return "";
    };
    expect(problemOf({ port: "9000", adminPort: "9000" })).toMatch(
      /^adminPort \(FUNCD_ADMIN_PORT\): .*port of its own/,
    );
    expect(problemOf({ port: "65535" })).toMatch(/--admin-port/);
  });

  it("lists every problem at once with the variable to fix, in the problem's errors (not twice)", () => {
    let thrown: unknown;
    try {
      loadConfig({ env: { FUNCD_PORT: "http", FUNCD_SANDBOX: "chroot", FUNCD_DATA_DIR: "/tmp/x" } });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: "CONFIG_INVALID" });
    const error = thrown as FuncdError;
    expect(error.message).toBe(
      "2 settings are not valid (set by a flag, a FUNCD_* variable or the config file):",
    );
    expect(error.extra.errors).toEqual([
      expect.stringMatching(/^port \(FUNCD_PORT\): /),
      expect.stringMatching(/^sandbox \(FUNCD_SANDBOX\): /),
    ]);
  });

  it("defaults the data dir to XDG_DATA_HOME, else ~/.local/share; root without XDG_DATA_HOME gets /var/lib/funcd", () => {
    expect(defaultDataDir({ XDG_DATA_HOME: "/xdg" }, "/home/u", 1000)).toBe("/xdg/funcd");
    expect(defaultDataDir({}, "/home/u", 1000)).toBe("/home/u/.local/share/funcd");
    expect(defaultDataDir({}, "/root", 0)).toBe("/var/lib/funcd");
    expect(defaultDataDir({ XDG_DATA_HOME: "/xdg" }, "/root", 0)).toBe("/xdg/funcd");
  });

  it("keeps a warm pool of 2 instances of 256 MiB per runtime by default; FUNCD_POOL_SIZE=0 turns it off", () => {
    const defaults = loadConfig({ env: { FUNCD_DATA_DIR: "/tmp/x" } });
    expect(defaults.poolSize).toBe(2);
    expect(defaults.poolMemoryMb).toBe(256);
    expect(loadConfig({ env: { FUNCD_DATA_DIR: "/tmp/x", FUNCD_POOL_SIZE: "0" } }).poolSize).toBe(0);
  });

  it("runs the process driver by default; FUNCD_DRIVER=docker keeps images 14 days unless told otherwise", () => {
    const defaults = loadConfig({ env: { FUNCD_DATA_DIR: "/tmp/x" } });
    expect(defaults.driver).toBe("process");
    expect(defaults.imageRetention).toBe(14 * 24 * 3_600_000);
    const docker = loadConfig({
      env: { FUNCD_DATA_DIR: "/tmp/x", FUNCD_DRIVER: "docker", FUNCD_IMAGE_RETENTION: "12h" },
    });
    expect(docker.driver).toBe("docker");
    expect(docker.imageRetention).toBe(12 * 3_600_000);
    expect(() => loadConfig({ env: { FUNCD_DATA_DIR: "/tmp/x", FUNCD_IMAGE_RETENTION: "soon" } })).toThrow(
      expect.objectContaining({
        extra: { errors: [expect.stringMatching(/^imageRetention \(FUNCD_IMAGE_RETENTION\)/)] },
      }),
    );
  });

  it("names every setting's variable FUNCD_ plus the key in upper snake case", () => {
    expect(envName("dataDir")).toBe("FUNCD_DATA_DIR");
    expect(envName("maxBodyBytes")).toBe("FUNCD_MAX_BODY_BYTES");
  });
});
