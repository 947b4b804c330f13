import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { mergeSpec } from "./deploy.js";
import { secretValue } from "./secret.js";

const stdin = (text: string | Buffer) => Readable.from([Buffer.from(text)]);

describe("funcd secret set: the value", () => {
  it("takes the argument as it is", async () => {
    expect((await secretValue("v\n", {}, stdin("ignored"))).toString()).toBe("v\n");
  });

  it("reads stdin without the one newline that ends a typed or echoed line", async () => {
    expect((await secretValue(undefined, {}, stdin("typed\n"))).toString()).toBe("typed");
    expect((await secretValue("-", {}, stdin("crlf\r\n"))).toString()).toBe("crlf");
    expect((await secretValue(undefined, {}, stdin("two\n\n"))).toString()).toBe("two\n");
  });

  it("refuses a value and --file together", async () => {
    await expect(secretValue("v", { file: "/x" }, stdin(""))).rejects.toThrow(/not both/);
  });
});

describe("funcd deploy --secret", () => {
  it("adds the names to the folder's spec, once each", () => {
    expect(mergeSpec({ secrets: ["a"] }, { secret: ["b", "a"] }).secrets).toEqual(["a", "b"]);
    expect(mergeSpec({}, {}).secrets).toBeUndefined();
  });
});
