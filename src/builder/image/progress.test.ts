import { describe, expect, it } from "vitest";
import { EngineOutput } from "./progress.js";

describe("EngineOutput", () => {
  it("joins and splits stream chunks into lines, without the builder's noise or colours", () => {
    const seen: string[] = [];
    const out = new EngineOutput((line) => seen.push(line));
    out.event({ stream: "Step 1/3 : FROM node:20-slim" });
    out.event({ stream: "\n" });
    out.event({ stream: " ---> 8d6c4f7bf726\n" });
    out.event({ stream: "Step 2/3 : RUN make\n ---> Running in 0123456789ab\n" });
    out.event({
      stream: "\u001b[91mwarning: something\n\u001b[0mRemoving intermediate container 0123456789ab\n",
    });
    out.event({ stream: "downloading  10%\rdownloading 100%\npartial" });
    out.event({ aux: { ID: "sha256:abc" } });
    out.flush();
    const expected = [
      "Step 1/3 : FROM node:20-slim",
      "Step 2/3 : RUN make",
      "warning: something",
      "downloading 100%",
      "partial",
    ];
    expect(out.lines).toEqual(expected);
    expect(seen).toEqual(expected);
    expect(out.imageId).toBe("sha256:abc");
    expect(out.error).toBeUndefined();
  });

  it("shows a pulled layer's status once per change, and remembers the error", () => {
    const out = new EngineOutput();
    out.event({ status: "Pulling from library/node", id: "20-slim" });
    out.event({ status: "Downloading", id: "a1", progress: "[=>   ]" });
    out.event({ status: "Downloading", id: "a1", progress: "[==>  ]" });
    out.event({ status: "Pull complete", id: "a1" });
    out.event({ errorDetail: { message: "manifest unknown" }, error: "manifest unknown" });
    expect(out.lines).toEqual([
      "20-slim: Pulling from library/node",
      "a1: Downloading",
      "a1: Pull complete",
      "error: manifest unknown",
    ]);
    expect(out.error).toBe("manifest unknown");
  });

  it("keeps only the last lines", () => {
    const out = new EngineOutput(undefined, 2);
    out.event({ stream: "one\ntwo\nthree\n" });
    expect(out.lines).toEqual(["two", "three"]);
  });
});
