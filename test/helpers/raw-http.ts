/**
 * HTTP/1.1 spoken by hand over a socket, for what ordinary clients hide: `Expect: 100-continue` (send the
 * head, wait for the interim `100 Continue`, then the body), odd headers, and the exact answers.
 */
import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface RawAnswer {
  /** Interim (1xx) status lines seen before the final answer. */
  interim: number[];
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Send the body only after a `100 Continue` arrived (else right after the head). */
  waitForContinue?: boolean;
}

/** Sends one request on a fresh connection (`Connection: close`) and reads the whole answer. */
export function rawRequest(url: string, request: RawRequest): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  const body = request.body ?? Buffer.alloc(0);
  const lines = [`${request.method} ${request.path} HTTP/1.1`, `Host: ${hostname}:${port}`];
  for (const [key, value] of Object.entries(request.headers)) lines.push(`${key}: ${value}`);
  if (request.body) lines.push(`Content-Length: ${body.length}`);
  lines.push("Connection: close", "", "");
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname.replace(/^\[|\]$/g, ""));
    socket.setTimeout(30_000, () => socket.destroy(new Error("no complete answer within 30 s")));
    let received = Buffer.alloc(0);
    let bodySent = false;
    const sendBody = () => {
      if (bodySent) return;
      bodySent = true;
      if (body.length > 0) socket.write(body);
    };
    socket.on("connect", () => {
      socket.write(lines.join("\r\n"));
      if (!request.waitForContinue) sendBody();
    });
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (request.waitForContinue && !bodySent && /^HTTP\/1\.1 100 /.test(received.toString("latin1"))) {
        sendBody();
      }
    });
    socket.on("error", reject);
    socket.on("end", () => {
      try {
        resolve(parseAnswer(received));
      } catch (err) {
        reject(err);
      }
    });
  });
}

function parseAnswer(bytes: Buffer): RawAnswer {
  let rest = bytes.toString("latin1");
  const interim: number[] = [];
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) throw new Error(`incomplete answer: ${JSON.stringify(rest.slice(0, 500))}`);
    const [statusLine = "", ...headerLines] = rest.slice(0, end).split("\r\n");
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
    rest = rest.slice(end + 4);
    if (status >= 100 && status < 200) {
      interim.push(status);
      continue;
    }
    const headers: Record<string, string> = {};
    for (const line of headerLines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const body = headers["transfer-encoding"] === "chunked" ? dechunk(rest) : rest;
    return { interim, status, headers, body: Buffer.from(body, "latin1").toString("utf8") };
  }
}

function dechunk(text: string): string {
  let out = "";
  let rest = text;
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const size = Number.parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}

/** What `curl --data-binary @file` does with a file, with curl's verbose trace (where `Expect:` shows). */
export async function curlUpload(
  url: string,
  file: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; trace: string }> {
  const args = ["-sS", "-v", "-o", "-", "-w", "\n%{http_code}", "--data-binary", `@${file}`];
  for (const [key, value] of Object.entries(headers)) args.push("-H", `${key}: ${value}`);
  args.push(url);
  const { stdout, stderr } = await execFileAsync("curl", args, { maxBuffer: 64 * 1024 * 1024 });
  const cut = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut), trace: stderr };
}

/**
 * A client that gives up mid-upload: sends the head and part of the declared body, then closes its
 * connection.
 */
export function abandonUpload(
  url: string,
  request: { path: string; headers: Record<string, string>; declared: number; sent: number },
): Promise<void> {
  const { hostname, port } = new URL(url);
  const lines = [`POST ${request.path} HTTP/1.1`, `Host: ${hostname}:${port}`];
  for (const [key, value] of Object.entries(request.headers)) lines.push(`${key}: ${value}`);
  lines.push(`Content-Length: ${request.declared}`, "", "");
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname.replace(/^\[|\]$/g, ""));
    socket.on("error", reject);
    socket.on("connect", () => {
      socket.write(lines.join("\r\n"));
      socket.write(Buffer.alloc(request.sent, 0x61), () => {
        socket.destroy();
        resolve();
      });
    });
  });
}
