/**
 * Reading a runtime template (`templates/<runtime>/template.yaml`) into the command the process driver
 * runs. `command`, and for the warm pool `generic` and `bootEnv`, matter here; the rest is the builder's.
 */
import { readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { type Interpreter, resolveInterpreter } from "./interpreter.js";

/** One element of a template's command line. */
export type CommandPart =
  /** A file of the template, relative to its folder, placed wherever the driver mounts the template. */
  { templateFile: string } | { literal: string };

export interface RuntimeTemplate {
  runtime: string;
  /** The template folder, symlinks resolved. */
  dir: string;
  /** What to exec: a host interpreter (`node`), or a program shipped in the template (`./server`). */
  program: { interpreter: Interpreter } | { templateFile: string };
  args: CommandPart[];
  /**
   * The runtime server has a generic mode (`FUNCD_GENERIC=1`, see docs/runtime-contract.md), so the
   * warm pool can pre-start it and specialize it later.
   */
  generic: boolean;
  /**
   * Variables the interpreter reads only while it boots (`NODE_OPTIONS`): a function whose env sets one
   * is started normally, since a pre-started instance could not honour it.
   */
  bootEnv: string[];
}

const RUNTIME_NAME = /^[a-z0-9][a-z0-9._-]*$/;

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** Loads `templates/<runtime>/template.yaml` and resolves its interpreter. */
export async function loadTemplate(templatesDir: string, runtime: string): Promise<RuntimeTemplate> {
  if (!RUNTIME_NAME.test(runtime))
    throw new FuncdError("UNKNOWN_RUNTIME", `Runtime "${runtime}" is not a valid name`);
  const file = join(templatesDir, runtime, "template.yaml");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new FuncdError("UNKNOWN_RUNTIME", `Runtime "${runtime}" is not installed: ${file} does not exist`);
  }
  let doc: { command?: unknown; generic?: unknown; bootEnv?: unknown } | null;
  try {
    doc = parse(text) as typeof doc;
  } catch (err) {
    throw new FuncdError(
      "UNKNOWN_RUNTIME",
      `Runtime "${runtime}" has an unreadable ${file}: ${messageOf(err)}`,
    );
  }
  const command = doc?.command;
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    !command.every((p) => typeof p === "string" && p !== "")
  ) {
    throw new FuncdError(
      "UNKNOWN_RUNTIME",
      `Runtime "${runtime}": ${file} needs "command", a list of strings such as ["node", "server.mjs"]`,
    );
  }
  const dir = await realpath(join(templatesDir, runtime));
  const [first, ...rest] = command as string[];
  const head = first as string;
  // A bare name is an interpreter from the host; a path is a program shipped inside the template.
  const program = head.includes("/")
    ? { templateFile: head.replace(/^\.\//, "") }
    : { interpreter: await resolveInterpreter(head) };
  const args: CommandPart[] = [];
  for (const arg of rest) {
    const relative = arg.replace(/^\.\//, "");
    const inTemplate = !arg.startsWith("-") && !arg.startsWith("/") && (await isFile(join(dir, relative)));
    args.push(inTemplate ? { templateFile: relative } : { literal: arg });
  }
  const bootEnv = Array.isArray(doc?.bootEnv)
    ? doc.bootEnv.filter((v): v is string => typeof v === "string")
    : [];
  return { runtime, dir, program, args, generic: doc?.generic === true, bootEnv };
}

/**
 * The argv for one instance: the program, interpreter flags (such as a heap limit), then the template's
 * arguments with template files placed under `templateMount`.
 */
export function commandLine(
  template: RuntimeTemplate,
  templateMount: string,
  interpreterFlags: string[],
): string[] {
  const place = (part: CommandPart) =>
    "templateFile" in part ? `${templateMount}/${part.templateFile}` : part.literal;
  const head =
    "interpreter" in template.program
      ? [template.program.interpreter.path, ...interpreterFlags]
      : [`${templateMount}/${template.program.templateFile}`];
  return [...head, ...template.args.map(place)];
}
