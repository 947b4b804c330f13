import { Command, CommanderError } from "commander";
import type { CliDeps } from "./context.js";
import { outputFor } from "./context.js";
import { toCliError } from "./errors.js";
import { packageVersion } from "./scaffold.js";
import { registerServer } from "./server.js";
import { register as apply } from "./verbs/apply.js";
import { register as build } from "./verbs/build.js";
import { register as deleteVerb } from "./verbs/delete.js";
import { register as deploy } from "./verbs/deploy.js";
import { register as describe } from "./verbs/describe.js";
import { register as dlq } from "./verbs/dlq.js";
import { register as executions } from "./verbs/executions.js";
import { register as exportVerb } from "./verbs/export.js";
import { register as images } from "./verbs/images.js";
import { register as invoke } from "./verbs/invoke.js";
import { register as list } from "./verbs/list.js";
import { register as logs } from "./verbs/logs.js";
import { register as newVerb } from "./verbs/new.js";
import { register as revisions } from "./verbs/revisions.js";
import { register as rollback } from "./verbs/rollback.js";
import { register as scale } from "./verbs/scale.js";
import { register as secret } from "./verbs/secret.js";
import { register as sync } from "./verbs/sync.js";
import { register as up } from "./verbs/up.js";

/** In the order `funcd --help` lists them: the write → deploy → invoke loop first. */
const VERBS = [
  newVerb,
  deploy,
  up,
  apply,
  sync,
  exportVerb,
  invoke,
  list,
  describe,
  logs,
  executions,
  dlq,
  revisions,
  rollback,
  scale,
  secret,
  deleteVerb,
  build,
  images,
];

const EXAMPLES = `
Examples:
  $ funcd server                         start the daemon (or: npm start)
  $ funcd new hello                      scaffold ./hello from the nodejs20 template
  $ funcd deploy ./hello                 deploy it; prints its URL
  $ funcd invoke hello --data '{"name": "you"}'
  $ funcd up -f funcd.yaml               deploy every function of a stack file
  $ funcd list --json

The daemon is found at --url, FUNCD_URL or http://127.0.0.1:8080; the API token is FUNCD_TOKEN,
else the file <data dir>/token the daemon writes (data dir: --data-dir, FUNCD_DATA_DIR,
$XDG_DATA_HOME/funcd, ~/.local/share/funcd, or /var/lib/funcd for root).`;

/** The whole `funcd` command tree; `deps` is the outside world (tests pass their own). */
export function buildProgram(deps: CliDeps): Command {
  const plain = outputFor(deps, false);
  const program = new Command("funcd")
    .description("funcd — self-hosted functions: write a handler, deploy it, get a URL")
    .version(packageVersion(), "-V, --version", "print funcd's version")
    .option("--url <url>", "the daemon's URL (FUNCD_URL, default http://127.0.0.1:8080)")
    .option("--data-dir <dir>", "the daemon's data folder, where the API token is read (FUNCD_DATA_DIR)")
    .option("--json", "machine-readable JSON on stdout")
    .helpCommand(true)
    .addHelpText("after", EXAMPLES)
    // Set before the verbs are added: subcommands inherit output and exit handling.
    .configureOutput({ writeOut: (text) => plain.help(text), writeErr: (text) => plain.usage(text) })
    .exitOverride()
    .showHelpAfterError("(add --help for usage)");
  registerServer(program);
  for (const register of VERBS) register(program, deps);
  return program;
}

/** Runs `funcd` with `argv` (as process.argv: node, script, args…) and returns the exit code. */
export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const program = buildProgram(deps);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander already printed its message (or the help/version it was asked for).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const error = toCliError(err);
    const out = outputFor(deps, program.opts<{ json?: boolean }>().json === true);
    out.error(error);
    if (deps.env.FUNCD_DEBUG && err instanceof Error && err.stack) out.diagnostic(err.stack);
    return error.exitCode;
  }
}
