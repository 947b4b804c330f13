import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import type { Command } from "commander";
import type { ApplyItem, ApplyResponse, FileMap } from "../../deploy/apply.js";
import { includePaths, readManifests } from "../../manifests/read.js";
import { type CliDeps, contextFor } from "../context.js";
import { CliError, usageError } from "../errors.js";
import { listFunctionFiles } from "../pack.js";
import { revisionLabel } from "../views.js";

interface ApplyOptions {
  file: string[];
  strict?: boolean;
  continueOnError?: boolean;
  prune?: boolean;
  dryRun?: boolean;
}

/** One file to apply: its text, the name it is recorded under, and the folder its paths are relative to. */
interface Source {
  label: string;
  text: string;
  dir: string;
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("apply")
    .description("deploy functions described for funcd, Kyma, Kubeless or OpenFaaS, unchanged")
    .requiredOption(
      "-f, --file <path>",
      "a YAML file, a folder of them, or - for stdin (repeatable)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--strict", "a field funcd would ignore is an error")
    .option("--continue-on-error", "apply the valid documents even when others are invalid")
    .option("--prune", "delete functions applied from the same file that it no longer describes")
    .option("--dry-run", "check and convert only; deploy nothing")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd apply -f examples/portability/kyma-inline.yaml
  $ funcd apply -f examples/portability/             # every .yaml/.yml file in the folder
  $ funcd apply -f stack.yml --strict                # OpenFaaS stack; refuse fields funcd ignores
  $ kubectl get functions -o yaml | funcd apply -f -

Reads Kyma serverless.kyma-project.io/v1alpha2 Functions, Kubeless kubeless.io/v1beta1 Functions,
OpenFaaS stack files and funcd stacks/Functions, in any mix. Every field is honoured or listed as
ignored with the reason (docs/portability.md). Applying the same file again changes nothing.`,
    )
    .action(async (options: ApplyOptions, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const sources: Source[] = [];
      for (const file of options.file) sources.push(...(await readSources(file, deps)));
      const client = ctx.client();
      const responses: ApplyResponse[] = [];
      for (const source of sources) {
        const includes = await readIncludes(source);
        const body = {
          yaml: source.text,
          source: source.label,
          folders: await readFolders(source, includes),
          includes,
          ...(options.strict ? { strict: true } : {}),
          ...(options.continueOnError ? { continueOnError: true } : {}),
          ...(options.prune ? { prune: true } : {}),
          ...(options.dryRun ? { dryRun: true } : {}),
        };
        const task = out.task(`applying ${source.label}`);
        try {
          const response = await client.progressCall<ApplyResponse>(
            "POST",
            "/api/v1/apply",
            body,
            (message) => task.update(message),
            { title: "Apply outcome unknown", hint: "Check with `funcd list`." },
          );
          task.succeed(`applied ${source.label}`);
          responses.push(response);
        } catch (err) {
          task.fail(`${source.label}: not applied`);
          throw err;
        }
      }
      const items = responses.flatMap((r) => r.items);
      out.result(responses.length === 1 ? responses[0] : responses, () => printItems(out, responses, items));
      const failed = items.filter((i) => i.result === "failed");
      const skipped = responses.flatMap((r) => r.problems);
      if (failed.length > 0 || skipped.length > 0) {
        throw new CliError(
          "DEPLOY_FAILED",
          `${failed.length} function${failed.length === 1 ? "" : "s"} failed${skipped.length > 0 ? `, ${skipped.length} problem${skipped.length === 1 ? "" : "s"} skipped` : ""}: ${failed.map((i) => i.name).join(", ")}`,
          { bare: true },
        );
      }
    });
}

function printItems(
  out: ReturnType<typeof contextFor>["out"],
  responses: ApplyResponse[],
  items: ApplyItem[],
) {
  out.line();
  out.table(
    ["NAME", "FROM", "RESULT", "REVISION", "IGNORED"],
    items.map((i) => [
      i.name,
      i.format ? `${i.format} ${i.label}` : "-",
      i.result,
      i.revision ? revisionLabel(i.revision) : "-",
      String(i.ignored.length),
    ]),
  );
  for (const item of items) {
    if (item.problem) out.line(`${item.name}: ${item.problem.detail.split("\n")[0]}`);
    for (const field of item.ignored) out.line(`${item.name}: ignored ${field.path}: ${field.reason}`);
    for (const note of item.notes) out.line(`${item.name}: note: ${note}`);
  }
  for (const response of responses) {
    for (const p of response.problems) out.line(`skipped ${p.path}: ${p.message}`);
  }
}

async function readSources(file: string, deps: CliDeps): Promise<Source[]> {
  if (file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of deps.stdin) chunks.push(Buffer.from(chunk as Buffer));
    return [{ label: "stdin", text: Buffer.concat(chunks).toString("utf8"), dir: process.cwd() }];
  }
  const path = resolve(file);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw usageError(`${file} does not exist`, "Pass a YAML file, a folder of them, or - for stdin.");
  }
  if (info.isDirectory()) {
    const names = (await readdir(path)).filter((n) => [".yaml", ".yml"].includes(extname(n))).sort();
    if (names.length === 0) throw usageError(`${file} holds no .yaml or .yml file`);
    const out: Source[] = [];
    for (const name of names) out.push(...(await readSources(join(path, name), deps)));
    return out;
  }
  return [{ label: path, text: await readFile(path, "utf8"), dir: dirname(path) }];
}

/** The code folders the documents name, read as path → base64 (the daemon checks and stores them). */
async function readFolders(
  source: Source,
  includes: Record<string, string>,
): Promise<Record<string, FileMap>> {
  // Only to find the folders: the daemon reads the documents again and judges them with its runtimes.
  const read = readManifests(source.text, {
    runtimes: { resolve: (name) => name, names: () => [] },
    includes,
  });
  const folders: Record<string, FileMap> = {};
  for (const fn of read.functions) {
    if (fn.code.kind !== "folder" || folders[fn.code.path]) continue;
    const dir = resolve(source.dir, fn.code.path);
    const files: FileMap = {};
    for (const rel of await listFunctionFiles(dir)) {
      files[rel] = { base64: (await readFile(join(dir, rel))).toString("base64") };
    }
    folders[fn.code.path] = files;
  }
  return folders;
}

async function readIncludes(source: Source): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const path of includePaths(source.text)) {
    try {
      out[path] = await readFile(resolve(source.dir, path), "utf8");
    } catch {
      // The daemon reports it as a problem of the document that names it.
    }
  }
  return out;
}
