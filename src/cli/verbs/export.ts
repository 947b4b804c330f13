import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { type CliDeps, contextFor } from "../context.js";
import { usageError } from "../errors.js";
import type { FunctionView } from "../views.js";

interface Exported {
  format: string;
  yaml: string;
  notes: string[];
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("export")
    .description(
      "write what runs functions on Kubernetes (Deployment, Service, HPA/KEDA, Secret refs) or Kyma",
    )
    .argument("<target>", "kubernetes")
    .argument("[names...]", "functions (default: all)")
    .option("-o, --output <dir>", "write one <name>.yaml per function into this folder (default: stdout)")
    .option("--keda", "a KEDA ScaledObject (scale to zero) instead of an HPA")
    .option("--include-secret-values", "write secret values into the Secret objects (default: names only)")
    .option("--kyma", "write Kyma Function resources instead")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd export kubernetes -o k8s/          # then: kubectl apply -f k8s/
  $ funcd export kubernetes orders --keda
  $ funcd export kubernetes --kyma orders > orders-kyma.yaml`,
    )
    .action(
      async (
        target: string,
        names: string[],
        options: { output?: string; keda?: boolean; includeSecretValues?: boolean; kyma?: boolean },
        command: Command,
      ) => {
        if (target !== "kubernetes")
          throw usageError(`Unknown export target "${target}"`, "Use: funcd export kubernetes");
        const ctx = contextFor(command, deps);
        const client = ctx.client();
        const all =
          names.length > 0
            ? names
            : (await client.call<{ items: FunctionView[] }>("GET", "/api/v1/functions")).items.map(
                (f) => f.name,
              );
        const query = new URLSearchParams({
          format: options.kyma ? "kyma" : "kubernetes",
          keda: String(options.keda === true),
          includeSecretValues: String(options.includeSecretValues === true),
        });
        const out: Array<{ name: string } & Exported> = [];
        for (const name of all) {
          const exported = await client.call<Exported>(
            "GET",
            `/api/v1/functions/${encodeURIComponent(name)}/export?${query}`,
          );
          out.push({ name, ...exported });
        }
        if (options.output) {
          const dir = resolve(options.output);
          await mkdir(dir, { recursive: true });
          for (const item of out) await writeFile(join(dir, `${item.name}.yaml`), item.yaml);
          ctx.out.note(`wrote ${out.length} file${out.length === 1 ? "" : "s"} to ${dir}`);
        } else if (ctx.out.json) ctx.out.data(out);
        else ctx.out.raw(out.map((i) => i.yaml).join("---\n"));
        for (const item of out) for (const note of item.notes) ctx.out.note(`note: ${note}`);
      },
    );

  program
    .command("get")
    .description("print a function's description: funcd spec, Kyma Function or Kubernetes objects")
    .argument("<name>", "the function")
    .option("-o, --output <form>", "yaml", "yaml")
    .option("--format <format>", "funcd | kyma | kubernetes", "funcd")
    .action(async (name: string, options: { output: string; format: string }, command: Command) => {
      if (options.output !== "yaml")
        throw usageError(`-o ${options.output} is not supported`, "Use -o yaml.");
      if (!["funcd", "kyma", "kubernetes"].includes(options.format)) {
        throw usageError(`--format ${options.format} is not one of funcd, kyma, kubernetes`);
      }
      const ctx = contextFor(command, deps);
      const exported = await ctx
        .client()
        .call<Exported>(
          "GET",
          `/api/v1/functions/${encodeURIComponent(name)}/export?format=${options.format}`,
        );
      ctx.out.raw(exported.yaml);
      for (const note of exported.notes) ctx.out.note(`note: ${note}`);
    });
}
