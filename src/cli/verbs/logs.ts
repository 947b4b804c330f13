import type { Command } from "commander";
import { integer } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { formatLogLine, type LogLineView } from "../views.js";

export function register(program: Command, deps: CliDeps): void {
  program
    .command("logs")
    .description("print a function's log lines (stdout, stderr and funcd's own notes)")
    .argument("<name>", "function name")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .option("--tail <n>", "lines of history to start with", integer(0, 10_000), 100)
    .addHelpText(
      "after",
      "\nLines read `time instance [requestId] text`; (stderr) marks stderr, (funcd) the daemon's notes.\n\nExamples:\n  $ funcd logs sum\n  $ funcd logs sum -f --tail 10",
    )
    .action(async (name: string, options: { follow?: boolean; tail: number }, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const query = new URLSearchParams({
        tail: String(options.tail),
        follow: String(options.follow === true),
      });
      const controller = new AbortController();
      const stopListening = deps.onInterrupt(() => controller.abort());
      try {
        const lines = ctx
          .client()
          .lines("GET", `/api/v1/functions/${encodeURIComponent(name)}/logs?${query}`, controller.signal);
        for await (const line of lines) {
          if (out.json) out.dataLine(line);
          else out.line(formatLogLine(line as LogLineView));
        }
      } catch (err) {
        // Ctrl-C is how a follow ends: not an error.
        if (controller.signal.aborted) return;
        throw err;
      } finally {
        stopListening();
      }
    });
}
