import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { LastLines, MAX_LINE, parseTagged, readLines } from "./output.js";

async function linesOf(chunks: Array<string | Buffer>): Promise<string[]> {
  const stream = new PassThrough();
  const lines: string[] = [];
  const done = readLines(stream, (line) => lines.push(line));
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  await done;
  return lines;
}

describe("readLines", () => {
  it("joins a line split across chunks and keeps the unterminated last line", async () => {
    expect(await linesOf(["hel", "lo\nwor", "ld\r\n", "tail"])).toEqual(["hello", "world", "tail"]);
  });

  it("does not break a character split across chunks", async () => {
    const bytes = Buffer.from("héllo\n");
    expect(await linesOf([bytes.subarray(0, 2), bytes.subarray(2)])).toEqual(["héllo"]);
  });

  it("cuts a runaway line at the cap and drops the rest of it", async () => {
    const lines = await linesOf(["x".repeat(MAX_LINE + 10), "y".repeat(100), "\nnext\n"]);
    expect(lines).toHaveLength(2);
    expect(lines[0]?.startsWith("x".repeat(MAX_LINE))).toBe(true);
    expect(lines[0]).toContain("truncated");
    expect(lines[0]).not.toContain("y");
    expect(lines[1]).toBe("next");
  });
});

describe("parseTagged", () => {
  it("reads the request id and strips the tag", () => {
    expect(parseTagged("\x1ereq-1\x1fhello")).toEqual({ requestId: "req-1", text: "hello" });
  });

  it("leaves untagged and malformed lines alone", () => {
    expect(parseTagged("plain")).toEqual({ text: "plain" });
    expect(parseTagged("\x1eno end")).toEqual({ text: "\x1eno end" });
  });
});

describe("LastLines", () => {
  it("keeps only the newest lines", () => {
    const last = new LastLines(2);
    for (const line of ["a", "b", "c"]) last.push(line);
    expect(last.snapshot()).toEqual(["b", "c"]);
  });
});
