import { formatDuration } from "../shared/duration.js";

/**
 * The daemon's answers as the CLI reads them. Every field is optional on
 * purpose: an older or newer daemon may leave some out, and the CLI prints the
 * ones that exist rather than crash.
 */
export interface FunctionView {
  name: string;
  runtime?: string;
  handler?: string;
  routes?: string[];
  memory?: number;
  timeoutMs?: number;
  concurrency?: number;
  scale?: {
    min?: number;
    max?: number;
    idleTimeoutMs?: number;
    targetUtilization?: number;
    stableWindowMs?: number;
    panicWindowMs?: number;
  };
  env?: Record<string, string>;
  labels?: Record<string, string>;
  status?: string;
  activeRevision?: {
    id: string;
    number?: number;
    createdAt?: number | string;
    image?: string | null;
  } | null;
  profile?: string | null;
  secrets?: string[];
  cpu?: number | null;
  network?: string;
  build?: string;
  /** How many build-time tests the spec has. */
  tests?: number;
  url?: string;
  instances?: InstanceView[];
  lastExit?: {
    reason?: string;
    code?: number | null;
    signal?: string | null;
    at?: number | string;
    lastLogLines?: string[];
  } | null;
  createdAt?: number | string;
  updatedAt?: number | string;
}

export interface InstanceView {
  instanceId: string;
  state?: string;
  inFlight?: number;
  startedAt?: number | string;
  revisionId?: string;
  pid?: number;
}

export interface RevisionView {
  id: string;
  number?: number;
  status?: string;
  error?: string | null;
  createdAt?: number | string;
  active?: boolean;
  files?: number;
  image?: string | null;
  /** Only in the single-revision answer. */
  buildLog?: string | null;
}

export interface LogLineView {
  id?: number;
  time?: number | string;
  functionName?: string;
  revisionId?: string;
  instanceId?: string;
  stream?: string;
  requestId?: string | null;
  text?: string;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** Local time, `2025-11-25 15:46:01` (`.123` with `ms`); anything unparsable is printed as it came. */
export function formatTime(value: number | string | undefined | null, ms = false): string {
  if (value === undefined || value === null || value === "") return "-";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${day} ${time}${ms ? `.${pad(date.getMilliseconds(), 3)}` : ""}`;
}

/** Revision ids are content hashes; twelve characters are plenty for humans. */
export function shortId(id: string | undefined): string {
  return id ? id.slice(0, 12) : "-";
}

export function revisionLabel(rev: { id: string; number?: number } | null | undefined): string {
  if (!rev) return "-";
  return rev.number === undefined ? shortId(rev.id) : `#${rev.number}`;
}

/** The public URL of a function: the view's `url` is a path on the daemon. */
export function functionUrl(baseUrl: string, view: Pick<FunctionView, "name" | "url">): string {
  const url = view.url ?? `/function/${view.name}`;
  return /^https?:\/\//.test(url) ? url : baseUrl + url;
}

export function instancesSummary(instances: InstanceView[] | undefined): string {
  if (!instances || instances.length === 0) return "0";
  const ready = instances.filter((i) => i.state === "ready").length;
  return ready === instances.length ? String(ready) : `${ready}/${instances.length}`;
}

export function listRows(items: FunctionView[]): string[][] {
  return items.map((f) => [
    f.name,
    f.runtime ?? "-",
    f.status ?? "-",
    revisionLabel(f.activeRevision),
    instancesSummary(f.instances),
    [f.url ?? `/function/${f.name}`, ...(f.routes ?? [])].join(", "),
  ]);
}

export const LIST_HEADERS = ["NAME", "RUNTIME", "STATUS", "REVISION", "INSTANCES", "ROUTES"];

export const REVISION_HEADERS = ["REVISION", "ID", "STATUS", "ACTIVE", "FILES", "CREATED", "ERROR"];

export function revisionRows(items: RevisionView[]): string[][] {
  return items.map((r) => [
    r.number === undefined ? "-" : `#${r.number}`,
    shortId(r.id),
    r.status ?? "-",
    r.active ? "*" : "",
    r.files === undefined ? "-" : String(r.files),
    formatTime(r.createdAt),
    firstLine(r.error),
  ]);
}

export const INSTANCE_HEADERS = ["INSTANCE", "STATE", "IN FLIGHT", "REVISION", "PID", "STARTED"];

export function instanceRows(items: InstanceView[]): string[][] {
  return items.map((i) => [
    i.instanceId,
    i.state ?? "-",
    i.inFlight === undefined ? "-" : String(i.inFlight),
    shortId(i.revisionId),
    i.pid === undefined ? "-" : String(i.pid),
    formatTime(i.startedAt),
  ]);
}

function firstLine(text: string | null | undefined): string {
  if (!text) return "";
  const line = text.split("\n")[0] ?? "";
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

/** `key: value` lines for what `describe` shows above its tables; absent fields are left out. */
export function describeFields(f: FunctionView, baseUrl: string): Array<[string, string]> {
  const fields: Array<[string, string | undefined]> = [
    ["Name", f.name],
    ["Status", f.status],
    ["URL", functionUrl(baseUrl, f)],
    ["Routes", f.routes && f.routes.length > 0 ? f.routes.join(", ") : undefined],
    ["Runtime", f.runtime],
    ["Handler", f.handler],
    [
      "Revision",
      f.activeRevision
        ? `${revisionLabel(f.activeRevision)} (${shortId(f.activeRevision.id)}, ${formatTime(f.activeRevision.createdAt)})`
        : "none ready",
    ],
    [
      "Image",
      f.activeRevision?.image ??
        (f.build === "none" ? "none (buildless: the runtime's image, code mounted)" : undefined),
    ],
    ["Profile", f.profile ?? undefined],
    ["Memory", f.memory === undefined ? undefined : `${f.memory} MiB`],
    ["CPU", f.cpu === undefined || f.cpu === null ? undefined : `${f.cpu} cores`],
    ["Network", f.network === "none" ? "none (no outbound connections)" : undefined],
    ["Timeout", f.timeoutMs === undefined ? undefined : formatDuration(f.timeoutMs)],
    ["Concurrency", f.concurrency === undefined ? undefined : `${f.concurrency} per instance`],
    ["Scale", f.scale ? formatScale(f.scale) : undefined],
    ["Tests", f.tests ? `${f.tests} build-time test${f.tests === 1 ? "" : "s"}` : undefined],
    ["Env", formatMap(f.env)],
    [
      "Secrets",
      f.secrets && f.secrets.length > 0
        ? `${f.secrets.join(", ")} (in env and /var/secrets/<name>)`
        : undefined,
    ],
    ["Labels", formatMap(f.labels)],
    ["Created", f.createdAt === undefined ? undefined : formatTime(f.createdAt)],
    ["Updated", f.updatedAt === undefined ? undefined : formatTime(f.updatedAt)],
  ];
  return fields.filter((entry): entry is [string, string] => entry[1] !== undefined);
}

export function formatScale(scale: NonNullable<FunctionView["scale"]>): string {
  const parts = [`min ${scale.min ?? "-"}`, `max ${scale.max ?? "-"}`];
  if (scale.idleTimeoutMs !== undefined) parts.push(`idle timeout ${formatDuration(scale.idleTimeoutMs)}`);
  if (scale.targetUtilization !== undefined) parts.push(`target utilization ${scale.targetUtilization}`);
  if (scale.stableWindowMs !== undefined) parts.push(`stable window ${formatDuration(scale.stableWindowMs)}`);
  if (scale.panicWindowMs !== undefined) parts.push(`panic window ${formatDuration(scale.panicWindowMs)}`);
  return parts.join(", ");
}

function formatMap(map: Record<string, string> | undefined): string | undefined {
  if (!map || Object.keys(map).length === 0) return undefined;
  return Object.entries(map)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

/** `time instance [requestId] text`; stderr lines are marked `(stderr)` and funcd's own `(funcd)`. */
export function formatLogLine(line: LogLineView): string {
  const mark = line.stream === "stderr" ? " (stderr)" : line.stream === "system" ? " (funcd)" : "";
  const request = line.requestId ? ` [${line.requestId}]` : "";
  return `${formatTime(line.time, true)} ${line.instanceId ?? "-"}${mark}${request} ${line.text ?? ""}`;
}
