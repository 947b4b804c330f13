import { errors } from "undici";
import { describe, expect, it } from "vitest";
import { classifyHopError, type HopFailure } from "./upstream-errors.js";

const errno = (code: string) => Object.assign(new Error(code), { code });

describe("classifyHopError", () => {
  const cases: [string, unknown, HopFailure][] = [
    [
      "a header undici refuses (Expect)",
      new errors.NotSupportedError("expect header not supported"),
      "request",
    ],
    ["an invalid header", new errors.InvalidArgumentError("invalid upgrade header"), "request"],
    ["a body shorter than declared", new errors.RequestContentLengthMismatchError(), "request"],
    ["the client aborting", new errors.RequestAbortedError(), "client-gone"],
    ["an AbortError", Object.assign(new Error("aborted"), { name: "AbortError" }), "client-gone"],
    ["a closed client stream", errno("ERR_STREAM_PREMATURE_CLOSE"), "client-gone"],
    ["no headers in time", new errors.HeadersTimeoutError(), "timeout"],
    ["a silent body", new errors.BodyTimeoutError(), "timeout"],
    ["the instance closing the socket", new errors.SocketError("other side closed"), "crashed"],
    ["a refused connection", errno("ECONNREFUSED"), "crashed"],
    ["a reset connection", errno("ECONNRESET"), "crashed"],
    ["a socket file that is gone", errno("ENOENT"), "crashed"],
    ["a destroyed pool", new errors.ClientDestroyedError(), "crashed"],
    [
      "unreadable HTTP from the instance",
      Object.assign(new errors.HTTPParserError("bad"), { code: "HPE_INVALID_CONSTANT" }),
      "bad-answer",
    ],
    ["too many response headers", new errors.HeadersOverflowError(), "bad-answer"],
    ["a bug of funcd's own", new TypeError("x is undefined"), "internal"],
  ];
  it.each(cases)("%s", (_what, err, expected) => {
    expect(classifyHopError(err)).toBe(expected);
  });

  it("never calls it a crash when the client's side failed first", () => {
    expect(classifyHopError(new errors.SocketError("other side closed"), true)).toBe("request");
    expect(classifyHopError(errno("EPIPE"), true)).toBe("request");
  });

  it("still stops an instance that went silent, whoever else failed", () => {
    expect(classifyHopError(new errors.HeadersTimeoutError(), true)).toBe("timeout");
  });
});
