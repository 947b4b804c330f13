/**
 * The answer of an operation that reports progress (a deploy, an image build): its result as JSON — or,
 * when the client accepts NDJSON, `progress` lines as they come and then one `result` (or `error`) line,
 * one wire format for both, so the CLI reads them alike.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { toFuncdError } from "./errors.js";

/**
 * Runs `run` and answers with `answer(result)`: as JSON with its status, or — NDJSON — as the last line
 * (after 200 headers, the progress lines first; a failure is an `error` line with the problem).
 * `operation` names it in the log when it fails on the server's side ("deploy failed").
 */
export async function respondWithProgress<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  operation: string,
  run: (onProgress: (message: string) => void) => Promise<T>,
  answer: (result: T) => { status: number; body: object },
) {
  if (!String(request.headers.accept ?? "").includes("application/x-ndjson")) {
    const { status, body } = answer(await run(() => {}));
    return reply.code(status).send(body);
  }
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  const write = (value: unknown) => raw.write(`${JSON.stringify(value)}\n`);
  try {
    const result = await run((message) => write({ type: "progress", message }));
    write({ type: "result", ...answer(result).body });
  } catch (err) {
    const error = toFuncdError(err);
    if (error.status >= 500) request.log.error({ err }, `${operation} failed`);
    write({ type: "error", problem: error.toProblem(request.url) });
  }
  raw.end();
  return reply;
}
