import path from "node:path";
import { describe, expect, it } from "vitest";
import { checkHandlerFile } from "./code.js";
import { fittingRuntimes, RuntimeRegistry } from "./runtimes.js";

const registry = new RuntimeRegistry(path.resolve(import.meta.dirname, "..", "..", "templates"));
const fits = (files: string[], handler?: string) =>
  fittingRuntimes(registry.templates(), (file) => files.includes(file), handler).map((f) => [
    f.template.runtime,
    f.file,
  ]);

describe("fittingRuntimes", () => {
  it("finds the runtime whose handler file a folder holds", () => {
    expect(fits(["handler.py", "requirements.txt"])).toEqual([["python3", "handler.py"]]);
    expect(fits(["handler.js", "package.json"])).toEqual([["nodejs20", "handler.js"]]);
    expect(fits(["index.mjs"], "index.handler")).toEqual([["nodejs20", "index.mjs"]]);
  });

  it("the handler file wins over another runtime's dependency file", () => {
    expect(fits(["handler.py", "package.json"])).toEqual([["python3", "handler.py"]]);
  });

  it("without a handler file, a dependency file decides", () => {
    expect(fits(["requirements.txt", "app.py"])).toEqual([["python3", "requirements.txt"]]);
    expect(fits(["README.md"])).toEqual([]);
  });
});

describe("RuntimeRegistry", () => {
  it("knows node and nodejs as aliases of nodejs20, as python names python3", () => {
    expect(registry.get("node").runtime).toBe("nodejs20");
    expect(registry.get("nodejs").runtime).toBe("nodejs20");
    expect(registry.get("python").runtime).toBe("python3");
  });
});

describe("checkHandlerFile", () => {
  it("names the runtime the files fit and the flag to pass when the handler file is missing", () => {
    expect(() =>
      checkHandlerFile(
        "handler.main",
        ["handler.py", "requirements.txt"],
        registry.get("nodejs20"),
        registry.templates(),
      ),
    ).toThrow(
      /needs the file handler\.js or .*handler\.py is a python3 function's: deploy it with --runtime python3/,
    );
  });

  it("passes when the file is there", () => {
    expect(() =>
      checkHandlerFile("handler.main", ["handler.js"], registry.get("nodejs20"), registry.templates()),
    ).not.toThrow();
  });
});
