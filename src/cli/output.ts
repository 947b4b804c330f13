import ora, { type Ora } from "ora";
import type { CliError } from "./errors.js";

/**
 * The only place that prints for humans. Verbs hand it tables, lines and
 * machine values; in `--json` mode human lines are dropped and only machine
 * values (and errors, as JSON) are written.
 */
export interface OutputOptions {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  json: boolean;
  /** Show spinners; defaults to whether stdout is a terminal. */
  interactive?: boolean;
}

/** A long step (a deploy) whose progress replaces the previous message. */
export interface Task {
  update(text: string): void;
  /**
   * A line of a tool's output (an installer's): shown on a terminal's spinner while it runs, not kept in
   * plain output, where a failure's error carries the tail anyway (it would print twice).
   */
  output(text: string): void;
  succeed(text: string): void;
  fail(text: string): void;
}

export class Output {
  readonly json: boolean;
  readonly interactive: boolean;
  private readonly stdout: OutputOptions["stdout"];
  private readonly stderr: OutputOptions["stderr"];

  constructor(options: OutputOptions) {
    this.stdout = options.stdout;
    this.stderr = options.stderr;
    this.json = options.json;
    // A terminal that reports no width (some ptys) would make ora's line counting loop forever.
    const sized = (options.stdout as { columns?: number }).columns !== 0;
    this.interactive = !options.json && (options.interactive ?? (options.stdout.isTTY === true && sized));
  }

  /** A line of human output on stdout (dropped in JSON mode). */
  line(text = ""): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** A note for humans on stderr (dropped in JSON mode), so stdout stays clean for pipes. */
  note(text: string): void {
    if (!this.json) this.stderr.write(`${text}\n`);
  }

  /** A machine value on stdout: the answer of a verb in JSON mode. */
  data(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One compact JSON value per line (streams: logs in JSON mode). */
  dataLine(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** The machine value in JSON mode, the human lines otherwise. */
  result(value: unknown, human: () => void): void {
    if (this.json) this.data(value);
    else human();
  }

  table(headers: string[], rows: string[][]): void {
    this.line(formatTable(headers, rows));
  }

  /** Bytes exactly as received (an invocation's body). */
  raw(bytes: Uint8Array | string): void {
    this.stdout.write(bytes);
  }

  /** Text that belongs on stderr even in JSON mode (invoke -v headers). */
  diagnostic(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  /** Commander's help and version text. */
  help(text: string): void {
    this.stdout.write(text);
  }

  /** Commander's own messages for usage mistakes ("error: unknown option"). */
  usage(text: string): void {
    this.stderr.write(text);
  }

  error(err: CliError): void {
    if (this.json) {
      const problem = {
        code: err.code,
        title: err.title,
        ...(err.status === undefined ? {} : { status: err.status }),
        detail: err.detail,
        ...err.extra,
        ...(err.hint === undefined ? {} : { hint: err.hint }),
      };
      this.stderr.write(`${JSON.stringify(problem)}\n`);
      return;
    }
    this.stderr.write(formatError(err));
  }

  task(text: string): Task {
    if (this.json) return { update() {}, output() {}, succeed() {}, fail() {} };
    if (this.interactive) {
      const spinner: Ora = ora({ text, stream: this.stdout }).start();
      return {
        update: (t) => {
          spinner.text = t;
        },
        output: (t) => {
          spinner.text = t;
        },
        succeed: (t) => spinner.succeed(t),
        fail: (t) => spinner.fail(t),
      };
    }
    // Not a terminal (CI, pipes): one plain line per progress message, on stderr.
    this.stderr.write(`${text}\n`);
    return {
      update: (t) => this.stderr.write(`  ${t}\n`),
      output: () => {},
      succeed: (t) => this.stdout.write(`${t}\n`),
      fail: (t) => this.stderr.write(`${t}\n`),
    };
  }
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function formatTable(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)));
  return all
    .map((row) =>
      widths
        .map((width, i) => (row[i] ?? "").padEnd(width))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** `Error: <title>: <detail>` then the problem's `errors` and `logs`, indented, then the hint. */
export function formatError(err: CliError): string {
  const lines: string[] = [];
  const detail = err.detail.trim();
  if (err.bare) lines.push(`Error: ${detail}`);
  else lines.push(detail && detail !== err.title ? `Error: ${err.title}: ${detail}` : `Error: ${err.title}`);
  const { errors } = err.extra;
  // Instance output comes as `logs`, an image build's tail as `log`.
  const logs = err.extra.logs ?? err.extra.log;
  if (Array.isArray(errors)) {
    for (const item of errors) lines.push(`  - ${formatValidationItem(item)}`);
  }
  if (Array.isArray(logs) && logs.length > 0) {
    lines.push("  logs:");
    for (const log of logs) for (const l of String(log).split("\n")) lines.push(`    ${l}`);
  }
  if (err.hint) lines.push(err.hint);
  return `${lines.join("\n")}\n`;
}

function formatValidationItem(item: unknown): string {
  if (typeof item !== "object" || item === null) return String(item);
  const { path, message } = item as { path?: unknown; message?: unknown };
  const where = Array.isArray(path) ? path.join(".") : typeof path === "string" ? path : "";
  const what = typeof message === "string" ? message : JSON.stringify(item);
  return where ? `${where}: ${what}` : what;
}
