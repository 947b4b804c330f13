/**
 * The `funcd` command's entry point (bin/funcd.js imports the compiled copy).
 * Everything else lives in program.ts so tests can run the CLI in-process.
 */
import { processDeps } from "./context.js";
import { run } from "./program.js";

// `funcd logs x | head` closes the pipe early: that is the reader being done, not a crash.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await run(process.argv, processDeps());
// A failure ends the process now: a daemon that failed to start may still hold timers or child
// processes that would keep it alive (the error is already written; stderr is synchronous here).
if (code !== 0) process.exit(code);
process.exitCode = code;
