import { describe, expect, it } from "vitest";
import type { InstanceSpec } from "../driver.js";
import { PIDS_LIMIT, SECRET_VARS_ENV, serviceName, serviceSpec, swarmSecretName } from "./service-spec.js";

const spec: InstanceSpec = {
  instanceId: "sum-abc-1",
  functionName: "sum",
  revisionId: "r1",
  runtime: "nodejs20",
  artifactDir: "/nowhere",
  handler: "handler.main",
  env: { GREETING: "hi" },
  memoryMb: 128,
  timeoutMs: 5_000,
  cpus: 0.5,
};

const plan = (overrides: Partial<InstanceSpec> = {}, imageUser?: string) =>
  serviceSpec({
    spec: { ...spec, ...overrides },
    image: "10.0.0.1:5000/funcd/sum@sha256:abc",
    imageUser,
    imageCommand: ["node", "/funcd/runtime/server.mjs"],
    daemonId: "d1",
    secrets: [{ id: "sec1", swarmName: "funcd-d1-xyz", name: "db-password" }],
    stopGraceMs: 2_000,
  });

describe("swarm service spec", () => {
  it("is hardened as far as a service spec goes: non-root, read-only, no capabilities, limits, no restart", () => {
    const body = plan({}, "root");
    const task = body.TaskTemplate as {
      ContainerSpec: Record<string, unknown>;
      Resources: { Limits: Record<string, number>; Reservations: Record<string, number> };
      RestartPolicy: { Condition: string };
    };
    expect(task.ContainerSpec).toMatchObject({
      User: "10001:10001",
      ReadOnly: true,
      Init: true,
      CapabilityDrop: ["ALL"],
      Mounts: [{ Type: "tmpfs", Target: "/tmp" }],
      StopGracePeriod: 2_000_000_000,
    });
    expect(task.Resources.Limits).toEqual({
      MemoryBytes: 128 * 1024 * 1024,
      Pids: PIDS_LIMIT,
      NanoCPUs: 5e8,
    });
    expect(task.Resources.Reservations).toEqual({ MemoryBytes: 128 * 1024 * 1024 });
    expect(task.RestartPolicy.Condition).toBe("none");
    expect(body.EndpointSpec).toEqual({
      Mode: "dnsrr",
      Ports: [{ Protocol: "tcp", TargetPort: 8080, PublishMode: "host" }],
    });
    expect(body.Mode).toEqual({ Replicated: { Replicas: 1 } });
    expect(body.Labels).toMatchObject({
      "funcd.managed": "true",
      "funcd.daemon": "d1",
      "funcd.function": "sum",
    });
  });

  it("keeps a secret's value out of the spec: mounted from a Swarm secret, its variable read by a wrapper", () => {
    const body = plan({ secrets: { "db-password": Buffer.from("hunter2") } }, "1000:1000");
    expect(JSON.stringify(body)).not.toContain("hunter2");
    const container = (
      body.TaskTemplate as { ContainerSpec: { Env: string[]; Command: string[]; Secrets: unknown[] } }
    ).ContainerSpec;
    expect(container.Env).toContain(`${SECRET_VARS_ENV}=DB_PASSWORD=db-password`);
    expect(container.Env).toContain("FUNCD_SECRETS_DIR=/var/secrets");
    expect(container.Command.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
    expect(container.Command.slice(-2)).toEqual(["node", "/funcd/runtime/server.mjs"]);
    expect(container.Secrets).toEqual([
      {
        SecretID: "sec1",
        SecretName: "funcd-d1-xyz",
        File: { Name: "/var/secrets/db-password", UID: "1000", GID: "1000", Mode: 0o400 },
      },
    ]);
  });

  it("names services and secrets within Swarm's limits", () => {
    expect(serviceName("sum.v2_x-1")).toBe("funcd-sum-v2-x-1");
    expect(serviceName("x".repeat(120)).length).toBeLessThanOrEqual(63);
    const a = swarmSecretName("d1", "k", Buffer.from("one"));
    expect(a).not.toBe(swarmSecretName("d1", "k", Buffer.from("two")));
    expect(a.length).toBeLessThanOrEqual(64);
  });
});
