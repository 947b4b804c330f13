/**
 * What the swarm says about the tasks of funcd's services, read by polling the manager (the Engine API
 * has no task event stream before API 1.43 for tasks on other nodes): where a task runs (its node's
 * address and the host-mode port the node's engine published) and whether it ended.
 */
import type Docker from "dockerode";

/** A task as the manager reports it (the fields funcd reads). */
export interface SwarmTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  DesiredState?: string;
  CreatedAt?: string;
  Status?: {
    State?: string;
    Message?: string;
    Err?: string;
    ContainerStatus?: { ExitCode?: number };
    PortStatus?: { Ports?: { PublishedPort?: number; TargetPort?: number }[] };
  };
}

/** States a task never leaves. */
const TERMINAL = new Set(["complete", "shutdown", "failed", "rejected", "orphaned", "remove"]);

/** The newest task of a service (a one-replica service that never restarts has one). */
export function newestTask(tasks: SwarmTask[]): SwarmTask | undefined {
  return [...tasks].sort((a, b) => (a.CreatedAt ?? "").localeCompare(b.CreatedAt ?? "")).at(-1);
}

/** True once the task is over: a terminal state, or the manager wants it shut down (its node is gone). */
export function taskEnded(task: SwarmTask): boolean {
  const state = task.Status?.State ?? "";
  return TERMINAL.has(state) || (task.DesiredState !== undefined && task.DesiredState !== "running");
}

/** True once the task's container is gone (a terminal state, whatever its desired state). */
export function taskStopped(task: SwarmTask): boolean {
  return TERMINAL.has(task.Status?.State ?? "");
}

/** The host-mode port the task's node published for `target`, once the task runs. */
export function publishedPort(task: SwarmTask, target: number): number | undefined {
  if (task.Status?.State !== "running") return undefined;
  return task.Status.PortStatus?.Ports?.find((p) => p.TargetPort === target)?.PublishedPort;
}

/** Node id → its address and hostname, asked again when a task names a node not seen yet. */
export class Nodes {
  private readonly byId = new Map<string, { addr: string; hostname: string; state: string }>();

  constructor(private readonly docker: Docker) {}

  async get(nodeId: string): Promise<{ addr: string; hostname: string; state: string } | undefined> {
    if (!this.byId.has(nodeId)) await this.refresh();
    return this.byId.get(nodeId);
  }

  /** The node's hostname for messages (its id when unknown). */
  name(nodeId: string | undefined): string {
    return (nodeId && this.byId.get(nodeId)?.hostname) || nodeId || "no node";
  }

  async refresh(): Promise<void> {
    const nodes = (await this.docker.listNodes()) as {
      ID: string;
      Description?: { Hostname?: string };
      Status?: { Addr?: string; State?: string };
    }[];
    for (const node of nodes) {
      this.byId.set(node.ID, {
        addr: node.Status?.Addr ?? "",
        hostname: node.Description?.Hostname ?? node.ID,
        state: node.Status?.State ?? "unknown",
      });
    }
  }
}

/**
 * The tasks of the named services, grouped by service id (tasks of a service removed meanwhile too).
 */
export async function tasksOf(docker: Docker, serviceIds: string[]): Promise<Map<string, SwarmTask[]>> {
  const out = new Map<string, SwarmTask[]>();
  if (serviceIds.length === 0) return out;
  let tasks: SwarmTask[];
  try {
    tasks = (await docker.listTasks({ filters: { service: serviceIds } })) as SwarmTask[];
  } catch (err) {
    if (!/not found/i.test(String((err as Error).message))) throw err;
    // The tasks of a removed service stay listed (desired state `remove`) until their containers are
    // gone: look through all of them.
    const wanted = new Set(serviceIds);
    tasks = ((await docker.listTasks()) as SwarmTask[]).filter((task) => wanted.has(task.ServiceID));
  }
  for (const task of tasks) {
    const list = out.get(task.ServiceID) ?? [];
    list.push(task);
    out.set(task.ServiceID, list);
  }
  return out;
}
