/**
 * One conformance suite for docs/runtime-contract.md: every runtime server answers the same cases, each case
 * against a fixture folder under test/fixtures/runtimes/<fixture>/ that holds one handler per runtime side
 * by side (handler.js beside handler.py), answering alike. A runtime's test file calls
 * runRuntimeConformance() and adds its language-only cases; a gap is written in `skip` with its reason.
 *
 * Adding a runtime: extend RuntimeName, write its handler file into every folder of test/fixtures/runtimes/
 * (a case whose fixture lacks it fails, naming the file to write), and add
 * test/integration/runtime-<name>.test.ts calling runRuntimeConformance with its command and HandlerSource.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import { answerCases } from "./runtime-cases-answers.js";
import { kubelessCases } from "./runtime-cases-kubeless.js";
import { lambdaCases } from "./runtime-cases-lambda.js";
import { lifecycleCases } from "./runtime-cases-lifecycle.js";
import {
  type RuntimeCommand,
  type RuntimeName,
  type RuntimeServer,
  type ServerOptions,
  sharedServer,
  spawnForTest,
  startForTest,
} from "./runtime-server.js";

/** The case fixtures: one folder per fixture, one handler file per runtime inside. */
export const CONFORMANCE_FIXTURES = fileURLToPath(new URL("../fixtures/runtimes/", import.meta.url));

/** What the suite must know about a runtime's language to check how it loads a handler. */
export interface HandlerSource {
  /** The files the server tries for FUNCD_HANDLER's file part, in its order (`handler` → `handler.py`). */
  candidates(file: string): string[];
  /** The files of a function whose handler does not parse; written at test time so no linter reads them. */
  brokenFunction: Record<string, string>;
  /** What the server calls the names it lists when the function asked for is missing: "its <listedAs> are: …". */
  listedAs: string;
}

export interface RuntimeConformanceOptions extends RuntimeCommand {
  /** The folder of case fixtures, normally CONFORMANCE_FIXTURES. */
  fixtures: string;
  source: HandlerSource;
  /** Cases this runtime does not pass yet, each with the reason. */
  skip?: Partial<Record<CaseName, string>>;
}

/** What a case gets: servers of the runtime under test, started from the case fixtures. */
export interface CaseContext {
  runtime: RuntimeName;
  source: HandlerSource;
  /** The `echo` fixture (Kubeless style), one server for all the cases that only ask it questions. */
  echo(): Promise<RuntimeServer>;
  /** The `lambda` fixture as `handler.echo` in the forced Lambda style, likewise shared. */
  lambda(): Promise<RuntimeServer>;
  /** A fixture's folder, after checking it holds this runtime's file for `handler` (default handler.main). */
  fixture(name: string, handler?: string): string;
  /** The file of a fixture that answers `handler` for this runtime, relative to the fixture (`lib/fn.py`). */
  handlerFile(name: string, handler?: string): string;
  /** A server of a fixture for this case alone, ready; stopped when the case ends. */
  start(name: string, options?: Omit<ServerOptions, "functionDir">): Promise<RuntimeServer>;
  /** A server of any function folder for this case alone, not waited for (for the cases that expect an exit). */
  spawn(options: ServerOptions): RuntimeServer;
}

export interface RuntimeCase {
  /** The behaviour, as the test is named. */
  title: string;
  run(t: CaseContext): Promise<void>;
}

const GROUPS = {
  "the Kubeless event, context and results": kubelessCases,
  "answers, failures, metrics and timeouts": answerCases,
  "loading, listening and stopping": lifecycleCases,
  "the Lambda style and choosing the style": lambdaCases,
};

/** Every case of the contract, by the name `skip` uses. */
export type CaseName =
  | keyof typeof kubelessCases
  | keyof typeof answerCases
  | keyof typeof lifecycleCases
  | keyof typeof lambdaCases;

/** Registers every case of the runtime contract against one runtime (call it at a test file's top level). */
export function runRuntimeConformance(options: RuntimeConformanceOptions): void {
  const skip: Partial<Record<string, string>> = options.skip ?? {};
  describe(`the ${options.runtime} runtime against the runtime contract`, () => {
    const t = caseContext(options);
    for (const [group, cases] of Object.entries(GROUPS)) {
      describe(group, () => {
        for (const [name, runtimeCase] of Object.entries<RuntimeCase>(cases)) {
          const reason = skip[name];
          if (reason === undefined) it(`${runtimeCase.title} [${name}]`, () => runtimeCase.run(t));
          else it.skip(`${runtimeCase.title} [${name}] (skipped: ${reason})`, () => {});
        }
      });
    }
  });
}

function caseContext(options: RuntimeConformanceOptions): CaseContext {
  const target: RuntimeCommand = { runtime: options.runtime, command: options.command };
  const handlerFile = (name: string, handler = "handler.main"): string => {
    const dir = path.join(options.fixtures, name);
    const candidates = options.source.candidates(handler.slice(0, handler.lastIndexOf(".")));
    const found = candidates.find((file) => fileExists(path.join(dir, file)));
    if (found === undefined) {
      throw new Error(
        `The fixture ${dir} has no ${candidates.join(" or ")}: write this case's handler for ` +
          `${options.runtime}, or skip the case with its reason`,
      );
    }
    return found;
  };
  const fixture = (name: string, handler?: string): string => {
    handlerFile(name, handler);
    return path.join(options.fixtures, name);
  };
  const echo = sharedServer(target, { functionDir: path.join(options.fixtures, "echo") });
  const lambda = sharedServer(target, {
    functionDir: path.join(options.fixtures, "lambda"),
    // `handler.echo` is not named `handler`, so only the explicit style makes it a Lambda handler.
    handler: "handler.echo",
    style: "lambda",
  });
  return {
    runtime: options.runtime,
    source: options.source,
    echo: () => {
      fixture("echo");
      return echo();
    },
    lambda: () => {
      fixture("lambda");
      return lambda();
    },
    fixture,
    handlerFile,
    start: (name, serverOptions = {}) =>
      startForTest(target, { ...serverOptions, functionDir: fixture(name, serverOptions.handler) }),
    spawn: (serverOptions) => spawnForTest(target, serverOptions),
  };
}

function fileExists(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
