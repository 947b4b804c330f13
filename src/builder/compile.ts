/**
 * Compiled runtimes (Go): a template whose `template.yaml` has a `compile:` section is built, not only
 * installed. The compile runs through the dependency cache like an npm or pip install — in a copy of the
 * function's files, keyed by their content hash and the template's own files — so a revision is compiled
 * once at deploy, an unchanged redeploy compiles nothing, and a compile error fails the deploy with the
 * compiler's output while the serving revision keeps serving. Its output folder (the binary) is linked
 * into the artifact's root like `node_modules/`.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { which } from "../drivers/process/interpreter.js";
import { FuncdError } from "../shared/errors.js";
import type { Installer } from "./installers.js";

/** The `compile:` section of a template.yaml. */
export const TemplateCompileSchema = z.object({
  /** The toolchain's name, for messages: `go`. */
  tool: z.string().min(1),
  /**
   * The build command; a word naming a file of the template becomes its absolute path. It is run in the
   * copy of the function's files with three more arguments: the template folder, that copy, and the
   * output folder to fill.
   */
  command: z.array(z.string().min(1)).min(1),
  /** The folder the build fills, placed at the function's root in the artifact (e.g. `.funcd-build`). */
  output: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, "a folder name")
    .refine((s) => s !== "." && s !== "..", "a folder name"),
  /** The daemon's environment variables passed on to the build (the toolchain's registry settings). */
  passEnv: z.array(z.string().min(1)).default([]),
  /** Programs the build needs on the host, each with the Debian package that provides it. */
  requires: z.array(z.object({ program: z.string().min(1), package: z.string().min(1) })).default([]),
});

export type TemplateCompile = z.output<typeof TemplateCompileSchema>;

/** Where the build finds its programs: the system's, never a version manager's shims. */
export const COMPILE_PATH = "/usr/local/bin:/usr/bin:/bin";

const PROXY_VARS = new Set(["https_proxy", "http_proxy", "no_proxy", "all_proxy"]);

const templateHashes = new Map<string, string>();

/** A hash of every file of the template folder (the runtime server is compiled into each binary). */
function templateHash(dir: string): string {
  const cached = templateHashes.get(dir);
  if (cached !== undefined) return cached;
  const hash = createHash("sha256");
  const visit = (folder: string, rel: string) => {
    const entries = readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const full = path.join(folder, entry.name);
      const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) visit(full, name);
      else if (entry.isFile()) hash.update(`${name}\0`).update(readFileSync(full)).update("\0");
    }
  };
  visit(dir, "");
  const digest = hash.digest("hex").slice(0, 16);
  templateHashes.set(dir, digest);
  return digest;
}

/** The installer that compiles functions of a template with a `compile:` section. */
export function compileInstaller(template: {
  runtime: string;
  dir: string;
  dependencyFile?: string | undefined;
  compile: TemplateCompile;
}): Installer {
  const { compile, dir } = template;
  const passed = new Set(compile.passEnv);
  const [head, ...rest] = compile.command;
  const place = (word: string) => {
    const relative = word.replace(/^\.\//, "");
    return !word.startsWith("-") && !word.startsWith("/") && existsIn(dir, relative)
      ? path.join(dir, relative)
      : word;
  };
  return {
    tool: compile.tool,
    dependencyFile: template.dependencyFile ?? "",
    always: true,
    companions: [],
    target: compile.output,
    flavour: `compile-${templateHash(dir)}`,
    needsInstall: () => true,
    // Every file of the function goes into the build, so every file is in the key.
    localPaths: () => ["."],
    label: () => `${compile.tool} build`,
    command: ({ workDir, targetDir }) => [place(head as string), ...rest.map(place), dir, workDir, targetDir],
    passEnv: (name) => passed.has(name) || PROXY_VARS.has(name.toLowerCase()),
    env: { PATH: COMPILE_PATH },
    async check() {
      for (const need of compile.requires) {
        if (!(await onPath(need.program))) {
          throw new FuncdError(
            "DEPLOY_FAILED",
            `The ${template.runtime} runtime compiles functions with "${need.program}", which is not installed on this host (looked in ${COMPILE_PATH}): install the Debian package ${need.package} (apt-get install ${need.package}) and deploy again`,
            { extra: { program: need.program, package: need.package } },
          );
        }
      }
    },
  };
}

function existsIn(dir: string, relative: string): boolean {
  try {
    return readdirSync(path.join(dir, path.dirname(relative))).includes(path.basename(relative));
  } catch {
    return false;
  }
}

async function onPath(program: string): Promise<boolean> {
  return (await which(program, COMPILE_PATH)) !== undefined;
}
