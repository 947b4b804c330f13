import { isUtf8 } from "node:buffer";
import type { CapturedBody } from "../store/types.js";

/** How much of an async invocation's request and result body its execution record keeps. */
export const RECORD_BODY_BYTES = 64 * 1024;

/** Headers an execution record does not show: they carry credentials, and records are kept for days. */
const REDACTED = new Set(["authorization", "cookie", "proxy-authorization", "x-api-key"]);

/** The first `limit` bytes of `data` (whose full size is `bytes`): UTF-8 text when it is, else base64. */
export function captureBody(
  data: Buffer | null,
  bytes = data?.length ?? 0,
  limit = RECORD_BODY_BYTES,
): CapturedBody {
  const kept = data === null ? Buffer.alloc(0) : data.length > limit ? data.subarray(0, limit) : data;
  const truncated = bytes > kept.length;
  if (isUtf8(kept)) return { body: kept.toString("utf8"), encoding: "utf8", bytes, truncated };
  return { body: kept.toString("base64"), encoding: "base64", bytes, truncated };
}

/** Headers as a record shows them, credentials replaced by "[redacted]". */
export function redactHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(headers)) out[key] = REDACTED.has(key) ? "[redacted]" : value;
  return out;
}
