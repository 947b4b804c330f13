/**
 * Compiled runtimes (Go) serve a binary built from the function's files, not the files themselves. For the
 * runtime conformance suite, each case fixture is copied to a temp folder and compiled there by the
 * template's own build script — the same script the dependency cache runs at deploy — so the suite runs
 * the binaries a deploy would produce.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface CompileOptions {
  /** The template folder holding build.sh. */
  template: string;
  /** The fixtures to copy (every folder), e.g. CONFORMANCE_FIXTURES. */
  fixtures: string;
  /** Only folders holding a file with this extension at their root are compiled. */
  extension: string;
  /** Where the build writes its output inside each function folder (the template's build output). */
  output: string;
  /** Environment of the build besides PATH, HOME and TMPDIR. */
  env?: Record<string, string>;
}

/**
 * Copies `fixtures` into a fresh temp folder, compiles the fixtures holding `extension` files, and returns
 * the copy's path. The toolchain's caches live in a folder kept across runs, as a daemon's would.
 */
export async function compileFixtures(options: CompileOptions): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-compiled-fixtures-"));
  fs.cpSync(options.fixtures, root, { recursive: true });
  const home = path.join(os.tmpdir(), "funcd-test-toolchain-home");
  fs.mkdirSync(home, { recursive: true });
  const folders = fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => path.join(root, e.name))
    .filter((dir) => fs.readdirSync(dir).some((f) => f.endsWith(options.extension)));
  // Two at a time: the machine has two cores, and each build is mostly the linker.
  const queue = [...folders];
  const worker = async () => {
    for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
      try {
        await run(
          "sh",
          [path.join(options.template, "build.sh"), options.template, dir, path.join(dir, options.output)],
          {
            env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: home, TMPDIR: os.tmpdir(), ...options.env },
          },
        );
      } catch (err) {
        const stderr = (err as { stderr?: string }).stderr ?? "";
        throw new Error(`Compiling the fixture ${dir} failed: ${stderr || String(err)}`);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  return root;
}
