import type { ServerResponse } from "node:http";
import type { FuncdError } from "../shared/errors.js";

/** Writes a FuncdError as application/problem+json on a raw response (the gateway's path has no framework). */
export function sendProblem(res: ServerResponse, error: FuncdError, instance?: string): void {
  const body = JSON.stringify(error.toProblem(instance));
  const headers: Record<string, string | number> = {
    "content-type": "application/problem+json",
    "content-length": Buffer.byteLength(body),
  };
  if (error.retryAfter !== undefined) headers["retry-after"] = error.retryAfter;
  res.writeHead(error.status, headers);
  res.end(body);
}
