import type { ApiClient, DeployResult } from "./client.js";
import { CliError, toCliError } from "./errors.js";
import type { Output } from "./output.js";
import { describePack, packFolder } from "./pack.js";
import type { SpecFields } from "./stack.js";
import { functionUrl, revisionLabel, shortId } from "./views.js";

/** One function to deploy: its name, folder and the spec fields to send. */
export interface DeployJob {
  name: string;
  dir: string;
  spec: SpecFields;
}

/**
 * Packs the folder and PUTs it, showing the daemon's progress on one spinner
 * line; shared by `deploy` and `up`. Throws a CliError when the deploy fails.
 */
export async function deployFunction(out: Output, client: ApiClient, job: DeployJob): Promise<DeployResult> {
  const { name } = job;
  const task = out.task(`${name}: packing ${job.dir}`);
  try {
    const packed = await packFolder(job.dir);
    task.update(`${name}: uploading ${describePack(packed)}`);
    const body = { ...job.spec, name, archive: packed.archive.toString("base64") };
    const result = await client.deploy(name, body, (message) =>
      // The daemon streams each line an installer prints this way (src/deploy/prepare.ts).
      message.startsWith("installing dependencies: ")
        ? task.output(`${name}: ${message}`)
        : task.update(`${name}: ${message}`),
    );
    if (result.revision?.status === "failed") {
      throw new CliError(
        "DEPLOY_FAILED",
        result.revision.error ?? `revision ${shortId(result.revision.id)} failed`,
      );
    }
    task.succeed(deployedLine(client.baseUrl, name, result));
    return result;
  } catch (err) {
    const error = toCliError(err);
    task.fail(`${name}: ${error.title}`);
    throw error;
  }
}

/** "Deployed sum revision #2 (3f9a…) → http://…/function/sum", or "sum unchanged (revision #2)". */
export function deployedLine(baseUrl: string, name: string, result: DeployResult): string {
  const rev = result.revision;
  if (result.changed === false) return `${name} unchanged (revision ${revisionLabel(rev)})`;
  const view = result.function ?? { name };
  const routes = (view.routes ?? []).map((r) => baseUrl + r);
  const also = routes.length > 0 ? ` (also ${routes.join(", ")})` : "";
  const label = rev ? `revision ${revisionLabel(rev)} (${shortId(rev.id)}) ` : "";
  return `Deployed ${name} ${label}→ ${functionUrl(baseUrl, view)}${also}`;
}
