/**
 * The user-defined bridge network instances run on: their own, not the engine's default bridge, with
 * inter-container traffic off (a function cannot call another function's container directly; the gateway
 * reaches each one through its loopback-published port). Outbound traffic is allowed; a function that
 * must have none says `network: none` and gets no network at all (see container-config.ts).
 */
import type Docker from "dockerode";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { LABELS } from "./engine.js";

/** Returns the id of the network `name`, creating it (labelled as funcd's) when it does not exist. */
export async function ensureNetwork(docker: Docker, name: string): Promise<string> {
  const find = async () => {
    // The engine's name filter matches substrings: keep the exact name only.
    const networks = await docker.listNetworks({ filters: { name: [name] } });
    return networks.find((n) => n.Name === name)?.Id;
  };
  const existing = await find();
  if (existing !== undefined) return existing;
  try {
    const created = await docker.createNetwork({
      Name: name,
      Driver: "bridge",
      CheckDuplicate: true,
      Labels: { [LABELS.managed]: "true" },
      Options: { "com.docker.network.bridge.enable_icc": "false" },
    });
    return created.id;
  } catch (err) {
    // Another daemon (or driver) created it meanwhile.
    const raced = await find().catch(() => undefined);
    if (raced !== undefined) return raced;
    throw new FuncdError(
      "SANDBOX_UNAVAILABLE",
      `Cannot create the Docker network "${name}" for function containers: ${messageOf(err)}`,
      { cause: err },
    );
  }
}
