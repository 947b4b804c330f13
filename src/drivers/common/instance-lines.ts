/**
 * Where an instance's lines go, for both drivers: every line is kept for crash reports, and goes to the
 * function's logs — or, while the instance is generic (a warm pool instance that belongs to no function
 * yet), to the daemon's log. The function's identity is read at each line: a specialized instance
 * changes it once.
 */
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import type { InstanceInfo, LogLine, LogSink } from "../driver.js";

/** What routing a line needs of the driver. */
export interface LineHost {
  readonly logger: Logger;
  readonly clock: Pick<Clock, "now">;
  readonly logSink: LogSink;
}

/** What routing a line reads of the instance. */
export interface LineSource {
  /** The last lines, for crash reports. */
  lastLines: { push(text: string): void };
  /** Set while it is a generic (warm pool) instance. */
  generic: object | undefined;
  info: InstanceInfo;
}

/** One line the instance wrote (`requestId`: the invocation the runtime tagged it with). */
export function outputLine(
  host: LineHost,
  inst: LineSource,
  stream: "stdout" | "stderr",
  text: string,
  requestId: string | undefined,
  /** When it was written, if not now (output an adopted container wrote while no daemon ran). */
  time?: number,
): void {
  inst.lastLines.push(text);
  if (inst.generic !== undefined) {
    host.logger.info({ poolInstance: inst.info.instanceId, stream }, text);
    return;
  }
  const { functionName, revisionId, instanceId } = inst.info;
  emitLog(host, {
    time: time ?? host.clock.now(),
    functionName,
    revisionId,
    instanceId,
    stream,
    ...(requestId === undefined ? {} : { requestId }),
    text,
  });
}

/** A line from the driver itself about an instance, kept with its output for crash reports. */
export function systemLine(host: LineHost, inst: LineSource, text: string): void {
  inst.lastLines.push(text);
  if (inst.generic !== undefined) {
    host.logger.warn({ poolInstance: inst.info.instanceId }, text);
    return;
  }
  const { functionName, revisionId, instanceId } = inst.info;
  emitLog(host, { time: host.clock.now(), functionName, revisionId, instanceId, stream: "system", text });
}

function emitLog(host: LineHost, line: LogLine): void {
  try {
    host.logSink(line);
  } catch (err) {
    host.logger.error({ err }, "the log sink threw");
  }
}
