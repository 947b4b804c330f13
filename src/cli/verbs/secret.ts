import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { SECRET_NAME } from "../../shared/secret-names.js";
import { type CliDeps, contextFor } from "../context.js";
import { usageError } from "../errors.js";
import { formatTime } from "../views.js";

/** One secret as `GET /api/v1/secrets` lists it (never a value). */
export interface SecretView {
  name: string;
  createdAt: string;
  updatedAt: string;
  usedBy: string[];
}

interface SetOptions {
  file?: string;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * The value to set: the argument; else `--file`'s bytes exactly; else standard input, without the one
 * newline that ends what `echo` prints or a typed line.
 */
export async function secretValue(
  value: string | undefined,
  options: SetOptions,
  stdin: NodeJS.ReadableStream,
): Promise<Buffer> {
  if (value !== undefined && value !== "-") {
    if (options.file !== undefined) throw usageError("Give the value or --file, not both");
    return Buffer.from(value);
  }
  if (options.file !== undefined) {
    try {
      return await readFile(options.file);
    } catch (err) {
      throw usageError(`Cannot read --file ${options.file}: ${(err as Error).message}`);
    }
  }
  const bytes = await readAll(stdin);
  const end = bytes.at(-1) === 0x0a ? (bytes.at(-2) === 0x0d ? 2 : 1) : 0;
  return bytes.subarray(0, bytes.length - end);
}

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw usageError(
      `"${name}" is not a secret name: use letters, digits, '_', '.' and '-', starting with a letter or digit (max 63)`,
    );
  }
}

const path = (name: string) => `/api/v1/secrets/${encodeURIComponent(name)}`;

/** `funcd secret set|list|rm`: named secrets functions read as /var/secrets/<name> and env vars. */
export function register(program: Command, deps: CliDeps): void {
  const secret = program
    .command("secret")
    .alias("secrets")
    .description(
      "manage secrets: functions listing them in `secrets:` get /var/secrets/<name> and an env var",
    )
    .addHelpText(
      "after",
      `
Examples:
  $ funcd secret set db-password                 # type the value, then Ctrl-D (kept out of shell history)
  $ printf %s "$PW" | funcd secret set db-password
  $ funcd secret set tls-key --file key.pem
  $ funcd deploy ./api --secret db-password      # the function reads /var/secrets/db-password or $DB_PASSWORD
  $ funcd secret list
  $ funcd secret rm db-password

Setting a value replaces the instances of the functions using it: they read the new value, no redeploy.`,
    )
    .action(async (_options: unknown, command: Command) => listSecrets(command, deps));

  secret
    .command("set")
    .description("create a secret or replace its value (read from stdin when VALUE is omitted or -)")
    .argument("<name>", "the secret's name, e.g. db-password")
    .argument("[value]", "the value (prefer stdin: arguments land in shell history)")
    .option("--file <path>", "take the value from a file, byte for byte")
    .action(async (name: string, value: string | undefined, options: SetOptions, command: Command) => {
      checkName(name);
      const { out, client } = contextFor(command, deps);
      const fromStdin = (value === undefined || value === "-") && options.file === undefined;
      if (fromStdin && (deps.stdin as { isTTY?: boolean }).isTTY) {
        out.note(`Type the value of ${name}, then Enter and Ctrl-D:`);
      }
      const bytes = await secretValue(value, options, deps.stdin);
      const body = await client().call<SecretView & { recycled: string[] }>("PUT", path(name), {
        base64: bytes.toString("base64"),
      });
      out.result(body, () => {
        out.line(`Set secret ${name} (${bytes.length} bytes)`);
        if (body.recycled.length > 0) out.note(`Replacing the instances of ${body.recycled.join(", ")}`);
      });
    });

  secret
    .command("list")
    .alias("ls")
    .description("list secrets: names, dates and the functions using them (never values)")
    .action(async (_options: unknown, command: Command) => listSecrets(command, deps));

  secret
    .command("rm")
    .alias("delete")
    .description("delete a secret no function uses")
    .argument("<name>", "the secret's name")
    .action(async (name: string, _options: unknown, command: Command) => {
      checkName(name);
      const { out, client } = contextFor(command, deps);
      await client().call<void>("DELETE", path(name));
      out.result({ deleted: name }, () => out.line(`Deleted secret ${name}`));
    });
}

async function listSecrets(command: Command, deps: CliDeps): Promise<void> {
  const { out, client } = contextFor(command, deps);
  const body = await client().call<{ items: SecretView[] }>("GET", "/api/v1/secrets");
  out.result(body, () => {
    if (body.items.length === 0) out.line("No secrets yet: `funcd secret set NAME` makes one.");
    else
      out.table(
        ["NAME", "USED BY", "UPDATED"],
        body.items.map((s) => [s.name, s.usedBy.join(", ") || "-", formatTime(s.updatedAt)]),
      );
  });
}
