import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { FuncdError } from "../shared/errors.js";
import { TemplateCompileSchema } from "./compile.js";

/** A path inside the template folder: relative, no `..`, so a template cannot ship the host's files. */
const TemplatePath = z
  .string()
  .min(1)
  .refine(
    (p) => !p.startsWith("/") && !p.split("/").includes("..") && !p.includes("\\"),
    "a path inside the template folder (relative, no ..)",
  );

/**
 * How the image builder makes an image of a runtime (`src/builder/image/`, the template's `Dockerfile`):
 * see the `image:` section of `templates/nodejs20/template.yaml`.
 */
const TemplateImageSchema = z.object({
  /** The image the Dockerfile builds FROM (its BASE_IMAGE argument); a build may name another. */
  base: z.string().min(1),
  /** Debian packages the runtime stage installs (apt names, optionally pinned: `curl=7.88.1-10`). */
  packages: z
    .array(z.string().regex(/^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$/, "a Debian package name"))
    .default([]),
  /** Runtime files and folders, relative to the template folder, copied to /funcd/runtime. */
  copy: z.array(TemplatePath).min(1),
  /** Shell commands run in /function after the code is copied: a build (compile, bundle), then a test. */
  build: z.string().min(1).optional(),
  test: z.string().min(1).optional(),
  /** `uid:gid` the server runs as in the image (the Dockerfile's FUNCD_USER). */
  user: z
    .string()
    .regex(/^\d+(:\d+)?$/, "a numeric uid or uid:gid")
    .optional(),
});

export type TemplateImage = z.output<typeof TemplateImageSchema>;

const TemplateMetaSchema = z.object({
  runtime: z.string(),
  language: z.string().optional(),
  command: z.array(z.string()).min(1),
  extensions: z.array(z.string()).default([]),
  dependencyFile: z.string().optional(),
  defaultHandler: z.string().default("handler.main"),
  aliases: z.array(z.string()).default([]),
  /** A command the daemon runs once in the template folder at start-up (e.g. compile bytecode). */
  prepare: z.array(z.string()).min(1).optional(),
  /** How to build an image of it; absent for runtimes that only run as processes. */
  image: TemplateImageSchema.optional(),
  /** A compiled runtime: how a function is compiled at deploy (src/builder/compile.ts). */
  compile: TemplateCompileSchema.optional(),
});

export type TemplateMeta = z.output<typeof TemplateMetaSchema> & { dir: string };

/**
 * The runtimes funcd can run: one folder per runtime under `templates/`, each
 * described by its `template.yaml`. Nothing outside `templates/` knows a language;
 * this registry is how the rest of funcd asks.
 */
export class RuntimeRegistry {
  readonly #byName = new Map<string, TemplateMeta>();

  constructor(templatesDir: string) {
    if (!existsSync(templatesDir)) return;
    for (const entry of readdirSync(templatesDir, { withFileTypes: true })) {
      const file = path.join(templatesDir, entry.name, "template.yaml");
      if (!entry.isDirectory() || !existsSync(file)) continue;
      const meta = TemplateMetaSchema.parse(parseYaml(readFileSync(file, "utf8")));
      const template = { ...meta, dir: path.join(templatesDir, entry.name) };
      this.#byName.set(meta.runtime, template);
      for (const alias of meta.aliases) this.#byName.set(alias, template);
    }
  }

  /** Each runtime's template once (aliases point to the same one). */
  templates(): TemplateMeta[] {
    return [...new Set(this.#byName.values())];
  }

  names(): string[] {
    return [...this.#byName.keys()].sort();
  }

  /** The template of a runtime name or alias, if installed. */
  find(runtime: string): TemplateMeta | undefined {
    return this.#byName.get(runtime);
  }

  get(runtime: string): TemplateMeta {
    const meta = this.#byName.get(runtime);
    if (!meta) {
      throw new FuncdError(
        "UNKNOWN_RUNTIME",
        `Runtime "${runtime}" is not installed; available: ${this.names().join(", ") || "(none)"}`,
        { extra: { available: this.names() } },
      );
    }
    return meta;
  }
}

/** Why a runtime fits a function's files: the file that says so. */
export interface RuntimeFit {
  template: TemplateMeta;
  /** The handler file (or, failing that, the dependency file) found for it. */
  file: string;
}

/**
 * The runtimes whose files a function has, from the templates alone (no language is known here): those
 * with the handler's file (`handler` → its file part plus one of the template's `extensions`; without a
 * handler, the template's `defaultHandler`); when none has it, those with their `dependencyFile`
 * (`requirements.txt`, `package.json`). Used to infer a folder's runtime and to say which runtime would
 * fit when the chosen one's handler file is missing.
 */
export function fittingRuntimes(
  templates: readonly TemplateMeta[],
  has: (file: string) => boolean,
  handler?: string,
): RuntimeFit[] {
  const byHandler: RuntimeFit[] = [];
  const byDependencies: RuntimeFit[] = [];
  for (const template of templates) {
    const file = handlerFiles(handler ?? template.defaultHandler, template.extensions).find(has);
    if (file !== undefined) byHandler.push({ template, file });
    else if (template.dependencyFile !== undefined && has(template.dependencyFile)) {
      byDependencies.push({ template, file: template.dependencyFile });
    }
  }
  return byHandler.length > 0 ? byHandler : byDependencies;
}

/** The files a handler (`file.export`) may live in for a runtime with these extensions. */
export function handlerFiles(handler: string, extensions: readonly string[]): string[] {
  const file = handler.slice(0, handler.lastIndexOf("."));
  return extensions.length > 0 ? extensions.map((ext) => file + ext) : [file];
}
