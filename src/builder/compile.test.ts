import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FuncdError } from "../shared/errors.js";
import { compileInstaller } from "./compile.js";

function template(requires: { program: string; package: string }[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-compile-template-"));
  writeFileSync(path.join(dir, "build.sh"), "exit 0\n");
  return {
    runtime: "lang1",
    dir,
    compile: {
      tool: "lang",
      command: ["sh", "build.sh"],
      output: ".funcd-build",
      passEnv: ["LANGPROXY"],
      requires,
    },
  };
}

describe("compileInstaller", () => {
  it("a missing toolchain fails with the Debian package to install", async () => {
    const installer = compileInstaller(
      template([{ program: "funcd-no-such-compiler", package: "funcd-lang" }]),
    );
    const err = await installer.check?.().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FuncdError);
    expect((err as FuncdError).code).toBe("DEPLOY_FAILED");
    expect((err as FuncdError).message).toContain('"funcd-no-such-compiler", which is not installed');
    expect((err as FuncdError).message).toContain("apt-get install funcd-lang");
  });

  it("a present toolchain passes the check", async () => {
    await expect(
      compileInstaller(template([{ program: "sh", package: "dash" }])).check?.(),
    ).resolves.toBeUndefined();
  });

  it("runs the template's script with the template, the function's copy and the output folder", () => {
    const t = template([]);
    const installer = compileInstaller(t);
    expect(installer.command({ workDir: "/w", targetDir: "/o/.funcd-build", present: new Set() })).toEqual([
      "sh",
      path.join(t.dir, "build.sh"),
      t.dir,
      "/w",
      "/o/.funcd-build",
    ]);
    expect(installer.target).toBe(".funcd-build");
    expect(installer.localPaths("", () => undefined)).toEqual(["."]);
    expect(installer.passEnv("LANGPROXY")).toBe(true);
    expect(installer.passEnv("HOME")).toBe(false);
  });

  it("keys a compile by the template's files, so a changed runtime server recompiles", () => {
    const a = template([]);
    const b = template([]);
    writeFileSync(path.join(b.dir, "build.sh"), "exit 1\n");
    expect(compileInstaller(a).flavour).not.toBe(compileInstaller(b).flavour);
  });
});
