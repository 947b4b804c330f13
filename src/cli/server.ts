import path from "node:path";
import type { Command } from "commander";
import type { App } from "../app.js";
import { adminListener, gatewayListener, loadConfig } from "../config/config.js";
import { DeployRequestSchema } from "../deploy/spec.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import { probeListen } from "../shared/listen.js";
import { packFolder } from "./pack.js";
import { readStack } from "./stack.js";

interface ServerFlags {
  port?: string;
  adminPort?: string;
  host?: string;
  dataDir?: string;
  sandbox?: string;
  driver?: string;
  registry?: string;
  logLevel?: string;
  config?: string;
  up?: string;
  token?: string;
}

/** `funcd server`: parse config once, start the daemon, deploy the stack file, print where things are. */
export function registerServer(program: Command): void {
  program
    .command("server")
    .alias("start")
    .description("Run the funcd daemon (process or docker driver + SQLite in the data dir)")
    .option("-p, --port <port>", "port to listen on (FUNCD_PORT, default 8080)")
    .option(
      "--admin-port <port>",
      "port of the admin listener: console, API, docs (FUNCD_ADMIN_PORT, default port + 1)",
    )
    .option("--host <host>", "address to bind (FUNCD_HOST, default 127.0.0.1)")
    .option(
      "--driver <driver>",
      "process | docker | swarm: where instances run (FUNCD_DRIVER, default process)",
    )
    .option("--registry <host:port>", "registry images are pushed to, for the swarm driver (FUNCD_REGISTRY)")
    .option("--sandbox <mode>", "auto | bwrap | none (FUNCD_SANDBOX)")
    .option("--log-level <level>", "fatal | error | warn | info | debug (FUNCD_LOG_LEVEL)")
    .option("-c, --config <file>", "YAML config file (FUNCD_CONFIG)")
    .option("--up <stack>", "deploy this stack file (e.g. funcd.yaml) once the daemon is up")
    .action(async (_opts: ServerFlags, command: Command) => {
      const flags = command.optsWithGlobals<ServerFlags>();
      const config = loadConfig({
        flags: {
          port: flags.port,
          adminPort: flags.adminPort,
          host: flags.host,
          dataDir: flags.dataDir,
          sandbox: flags.sandbox,
          driver: flags.driver,
          registry: flags.registry,
          logLevel: flags.logLevel ?? quietInTerminal(flags.config),
          up: flags.up,
        },
        ...(flags.config ? { file: flags.config } : {}),
      });
      // A busy port fails before any work (the listen itself reports it the same way if it is taken later).
      await probeListen(gatewayListener(config));
      await probeListen(adminListener(config));
      // Loaded here, not at the top: every other verb would otherwise pay for loading the whole daemon.
      const { createApp } = await import("../app.js");
      const app = await createApp(config);
      let listening: { url: string; adminUrl: string };
      try {
        listening = await app.listen();
      } catch (err) {
        // A busy port: stop what createApp started (instances, pool, timers), then report; main.ts exits.
        await closeWithin(app, 10_000);
        throw err;
      }
      const { url, adminUrl } = listening;
      const print = (line = "") => process.stdout.write(`${line}\n`);
      print();
      print(`funcd ${url}`);
      print(`  invoke     ${url}/function/<name>`);
      print(`  admin      ${adminUrl}   (console, API, docs: an origin no function serves from)`);
      print(`  console    ${adminUrl}/ui/`);
      print(`  API        ${adminUrl}/api/v1   (token: ${app.tokenFile ?? "from FUNCD_TOKEN"})`);
      print(`             ${url}/api/v1   (the same API for Bearer clients: the CLI, curl)`);
      print(`  API docs   ${adminUrl}/api/docs`);
      print(`  metrics    ${url}/metrics`);
      print(`  data dir   ${config.dataDir}`);
      print();
      if (config.up) await deployStack(app, config.up, url, print);

      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        app.logger.info({ signal }, "stopping");
        app.close().then(
          () => process.exit(0),
          (err: unknown) => {
            process.stderr.write(`Error while stopping: ${messageOf(err)}\n`);
            process.exit(1);
          },
        );
      };
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
    });
}

async function deployStack(
  app: App,
  file: string,
  url: string,
  print: (line?: string) => void,
): Promise<void> {
  const stack = await readStack(path.resolve(file));
  print(`Deploying ${stack.functions.length} function(s) from ${file}:`);
  for (const fn of stack.functions) {
    try {
      const packed = await packFolder(fn.dir);
      const request = DeployRequestSchema.safeParse({
        ...fn.spec,
        name: fn.name,
        archive: packed.archive.toString("base64"),
      });
      if (!request.success) {
        const problems = request.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
        throw new FuncdError("VALIDATION_FAILED", `${file}: function "${fn.name}": ${problems}`);
      }
      const result = await app.deployer.deploy(request.data);
      const routes = result.function.spec.routes.map((r) => `${url}${r}`);
      const state = result.changed
        ? `revision #${result.revision.number}`
        : `unchanged (#${result.revision.number})`;
      print(
        `  ✓ ${fn.name.padEnd(12)} ${url}/function/${fn.name}${routes.length ? `  ${routes.join(" ")}` : ""}  ${state}`,
      );
    } catch (err) {
      const detail = err instanceof FuncdError ? `${err.title}: ${err.message}` : messageOf(err);
      print(`  ✗ ${fn.name.padEnd(12)} ${detail}`);
    }
  }
  print();
}

/** Closes the app, giving up after `ms`: a start-up failure must end the process, not hang it. */
async function closeWithin(app: App, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    app.close().catch((err: unknown) => app.logger.error({ err }, "closing after a failed start failed")),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * In a terminal, with no level chosen anywhere, the daemon logs warnings and errors only: the banner and
 * the deploy lines are what a person reads there. Piped or run as a service, it logs at `info` (JSON).
 */
function quietInTerminal(configFile: string | undefined): string | undefined {
  const chosen = process.env.FUNCD_LOG_LEVEL || configFile || process.env.FUNCD_CONFIG;
  return !chosen && process.stdout.isTTY ? "warn" : undefined;
}
