import { describe, expect, it } from "vitest";
import { redact } from "./git.js";

describe("redact", () => {
  it.each([
    [
      "fatal: unable to access 'https://bob:hunter2@git.example/x.git/'",
      "fatal: unable to access 'https://***@git.example/x.git/'",
    ],
    ["remote: token abcd1234 refused", "remote: token *** refused"],
    ["plain message", "plain message"],
  ])("hides credentials in %s", (input, output) => {
    expect(redact(input, "abcd1234")).toBe(output);
  });
});
