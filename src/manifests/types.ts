/**
 * What a manifest adapter produces: a funcd spec (the fields `PUT /api/v1/functions/:name` takes, without
 * code), where the code comes from, and every field of the source document funcd did not honour, with why.
 * Adapters are pure: no I/O, no store; the apply service (src/api/apply.ts) does the deploying.
 */

/** The platforms funcd reads descriptions of. */
export type ManifestFormat = "funcd" | "kyma" | "kubeless" | "openfaas";

/** A field of the source document that changes nothing on funcd, and why. */
export interface IgnoredField {
  /** Where it is: `documents[1].spec.resourceConfiguration.build`. */
  path: string;
  reason: string;
}

/** A problem that stops a document from being applied: where, and what is wrong. */
export interface ManifestProblem {
  path: string;
  message: string;
}

/** A git repository to build the function from (funcd's `source.git`, Kyma's `gitRepository`). */
export interface GitSourceRef {
  url: string;
  /** Branch, tag or commit; default: the remote's HEAD. */
  ref?: string;
  /** The function's folder inside the repository; default: its root. */
  dir?: string;
  /** A funcd secret holding the credentials: a token (HTTP) or a private key (SSH). */
  secret?: string;
}

/** Where a function's code comes from. */
export type CodeSource =
  /** Written inline in the document (Kyma inline source, Kubeless `function`). */
  | { kind: "inline"; files: Record<string, string> }
  /** A folder next to the manifest (OpenFaaS `handler`, funcd `path`), relative to the manifest's file. */
  | { kind: "folder"; path: string; extraFiles?: Record<string, string> }
  /** A git repository. */
  | { kind: "git"; git: GitSourceRef }
  /** No code given: the function's current code stays (funcd spec without a path). */
  | { kind: "current" };

/** One function read from a document. */
export interface ConvertedFunction {
  /** The document's index in its file. */
  index: number;
  format: ManifestFormat;
  /** What the document calls it (`Function/orders`, `functions.orders`), for output. */
  label: string;
  name: string;
  /** funcd spec fields (without `name` and code). */
  spec: Record<string, unknown>;
  code: CodeSource;
  ignored: IgnoredField[];
  /** Honoured with a change worth saying (a runtime mapped to another name, a ConfigMap read as a secret). */
  notes: string[];
  /** How many fields of the document funcd honoured (for the portability report). */
  honoured: number;
}

/** Which runtimes the daemon has (its template registry), so adapters can refuse one funcd lacks. */
export interface RuntimeLookup {
  /** The funcd runtime a name resolves to (aliases included), or undefined when none is installed. */
  resolve(name: string): string | undefined;
  names(): string[];
}

/** The result of reading a whole file: its functions, and problems (by document) when any is invalid. */
export interface ReadResult {
  functions: ConvertedFunction[];
  problems: ManifestProblem[];
  /** Documents that held nothing funcd reads (empty ones). */
  documents: number;
}
