import { describe, expect, it } from "vitest";
import type { InstanceSpec } from "../driver.js";
import {
  containerConfig,
  containerUser,
  instanceEnv,
  isRootUser,
  socketVolumeConfig,
  socketVolumeName,
} from "./container-config.js";

const spec: InstanceSpec = {
  instanceId: "sum-3f9a-1",
  functionName: "sum",
  revisionId: "rev-1",
  runtime: "nodejs20",
  artifactDir: "/data/artifacts/rev-1",
  handler: "handler.main",
  env: { GREETING: "hi", FUNCD_LISTEN: "0.0.0.0:80" },
  memoryMb: 128,
  timeoutMs: 5_000,
};

const plan = {
  spec,
  image: "funcd/runtime-nodejs20:abc",
  imageUser: "1000:1000",
  daemonId: "d1",
  networkName: "funcd",
  buildless: true,
};

describe("container config", () => {
  it("is hardened: read-only root, private /tmp, no capabilities, no-new-privileges, limits, init", () => {
    const host = containerConfig({ ...plan, spec: { ...spec, cpus: 0.25 } }).HostConfig ?? {};
    expect(host).toMatchObject({
      Init: true,
      ReadonlyRootfs: true,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      Privileged: false,
      PidsLimit: 256,
      Memory: 128 * 1024 * 1024,
      MemorySwap: 128 * 1024 * 1024,
      NanoCpus: 250_000_000,
      NetworkMode: "funcd",
    });
    expect(host.Tmpfs).toEqual({ "/tmp": "rw,noexec,nosuid,nodev,size=64m" });
    expect(host.CapAdd).toBeUndefined();
    expect(host.Binds).toBeUndefined();
  });

  it("publishes the runtime's port on 127.0.0.1 only, at a port the engine picks", () => {
    const config = containerConfig(plan);
    expect(config.ExposedPorts).toEqual({ "8080/tcp": {} });
    expect(config.HostConfig?.PortBindings).toEqual({ "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] });
  });

  it("mounts the code read-only in buildless mode only; nothing from the host in image mode", () => {
    expect(containerConfig(plan).HostConfig?.Mounts).toEqual([
      { Type: "bind", Source: "/data/artifacts/rev-1", Target: "/function", ReadOnly: true },
    ]);
    const image = containerConfig({ ...plan, image: "funcd/sum:123", buildless: false });
    expect(image.HostConfig?.Mounts).toEqual([]);
    expect(image.Image).toBe("funcd/sum:123");
    expect(image.HostConfig?.NanoCpus).toBeUndefined();
  });

  it("network none: no network, no published port, a socket volume instead", () => {
    const config = containerConfig({ ...plan, spec: { ...spec, network: "none" } });
    expect(config.HostConfig?.NetworkMode).toBe("none");
    expect(config.HostConfig?.PortBindings).toBeUndefined();
    expect(config.ExposedPorts).toBeUndefined();
    expect(config.HostConfig?.Mounts).toContainEqual({
      Type: "volume",
      Source: socketVolumeName(spec.instanceId),
      Target: "/run/funcd",
    });
    expect(config.Env).toContain("FUNCD_LISTEN=/run/funcd/sock");
  });

  it("labels and names the container after its instance, function, revision and daemon", () => {
    const config = containerConfig(plan);
    expect(config.name).toBe("funcd-sum-3f9a-1");
    expect(config.Labels).toEqual({
      "funcd.managed": "true",
      "funcd.daemon": "d1",
      "funcd.function": "sum",
      "funcd.revision": "rev-1",
      "funcd.instance": "sum-3f9a-1",
      "funcd.kind": "instance",
    });
  });

  it("gives the function its env plus the contract variables, which the function cannot override", () => {
    expect(instanceEnv({ ...spec, handlerStyle: "lambda" }, "8080")).toEqual({
      HOME: "/tmp",
      NODE_ENV: "production",
      GREETING: "hi",
      FUNCD_LISTEN: "8080",
      FUNCD_FUNCTION_DIR: "/function",
      FUNCD_HANDLER: "handler.main",
      FUNCD_HANDLER_STYLE: "lambda",
      FUNCD_FUNCTION_NAME: "sum",
      FUNCD_REVISION: "rev-1",
      FUNCD_RUNTIME: "nodejs20",
      FUNCD_TIMEOUT_MS: "5000",
      FUNCD_MEMORY_LIMIT_MB: "128",
    });
  });

  it.each([
    [undefined, "10001:10001"],
    ["", "10001:10001"],
    ["root", "10001:10001"],
    ["0", "10001:10001"],
    ["0:0", "10001:10001"],
    ["root:staff", "10001:10001"],
    ["1000:1000", "1000:1000"],
    ["node", "node"],
    [" 2000 ", "2000"],
  ])("image user %j runs as %j", (imageUser, expected) => {
    expect(containerUser(imageUser)).toBe(expected);
    expect(isRootUser(imageUser)).toBe(expected === "10001:10001");
  });

  it("socket volumes are small tmpfs volumes owned by the container's user, with short names", () => {
    expect(socketVolumeConfig(spec, "d1", "1000:1001").DriverOpts).toEqual({
      type: "tmpfs",
      device: "tmpfs",
      o: "uid=1000,gid=1001,mode=0700,size=1m",
    });
    expect(socketVolumeConfig(spec, "d1", "node").DriverOpts?.o).toBe("mode=0777,size=1m");
    // A long instance id still gives a socket path well under the 108-byte limit.
    expect(socketVolumeName("x".repeat(128))).toMatch(/^funcd-sock-[0-9a-f]{16}$/);
  });
});
