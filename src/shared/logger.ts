import { type Logger, pino } from "pino";

export type { Logger };

/** The daemon's one logger; parts take a child with their own bindings. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: "funcd" } }, destination ?? process.stdout);
}
