import { createServer } from "node:net";
import { FuncdError, messageOf } from "./errors.js";

/** Which setting chose a listener's address: named in the error, so the user knows what to change. */
export interface ListenerSetting {
  /** What listens there, for the message: "the gateway and API", "the admin listener". */
  what: string;
  host: string;
  port: number;
  /** The flag and variable that choose the port, e.g. `--port` and `FUNCD_PORT`. */
  flag: string;
  env: string;
}

/**
 * Runs `listen` (a `server.listen` or `fastify.listen` wrapped in a promise) and turns the errors a busy
 * or forbidden address gives into one problem that names the address and the setting to change. Use it
 * for every listener the daemon opens, so each refuses to start the same way.
 */
export async function listenOrExplain<T>(setting: ListenerSetting, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    throw explainListenError(setting, err);
  }
}

/** The problem for a failed listen; errors that are not about the address pass through unchanged. */
export function explainListenError(setting: ListenerSetting, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where = `${setting.host.includes(":") ? `[${setting.host}]` : setting.host}:${setting.port}`;
  const choose = `choose another port with ${setting.flag} PORT (${setting.env}), or 0 for any free port`;
  switch (code) {
    case "EADDRINUSE":
      return new FuncdError(
        "PORT_IN_USE",
        `Cannot listen on ${where} for ${setting.what}: the port is already in use — another funcd may be running there (stop it), or ${choose}`,
        { cause: err, extra: { host: setting.host, port: setting.port } },
      );
    case "EACCES":
      return new FuncdError(
        "PORT_IN_USE",
        `Cannot listen on ${where} for ${setting.what}: permission denied (ports below 1024 need privileges) — ${choose}`,
        { cause: err, extra: { host: setting.host, port: setting.port } },
      );
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return new FuncdError(
        "CONFIG_INVALID",
        `Cannot listen on ${where} for ${setting.what}: ${setting.host} is not an address of this machine (${messageOf(err)}) — set --host / FUNCD_HOST`,
        { cause: err },
      );
    default:
      return err;
  }
}

/**
 * Fails fast when `setting`'s address cannot be listened on, before the daemon opens its data dir and
 * restores its functions (seconds of work a busy port would waste). Binds and closes at once; the real
 * listen still goes through `listenOrExplain`, since the port may be taken in between.
 */
export async function probeListen(setting: ListenerSetting): Promise<void> {
  if (setting.port === 0) return;
  const probe = createServer();
  await listenOrExplain(
    setting,
    () =>
      new Promise<void>((resolve, reject) => {
        probe.once("error", reject);
        probe.listen({ port: setting.port, host: setting.host, exclusive: true }, () => resolve());
      }),
  );
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
