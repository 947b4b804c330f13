/**
 * Turns the Engine API's build and pull progress (a stream of JSON events) into the lines a person
 * reads: the build steps, each step's output, pulled layers — and remembers the error and the image id.
 */

/** One event of `POST /build` or `POST /images/create` (only the fields funcd reads). */
export interface EngineEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  error?: string;
  errorDetail?: { message?: string; code?: number };
  aux?: { ID?: string };
}

/** Lines that only say which throwaway container or layer id the classic builder used. */
const NOISE = [
  /^ ---> [0-9a-f]{12}$/,
  /^ ---> Running in [0-9a-f]{12}$/,
  /^Removing intermediate container [0-9a-f]{12}$/,
  /^Successfully built [0-9a-f]{12}$/,
];
/** Terminal colour and cursor sequences (CSI … final byte). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching the escape character is the point.
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;
/** Pull statuses repeated for every chunk of a layer: shown once per layer. */
const TICKING = new Set(["Downloading", "Extracting", "Waiting", "Verifying Checksum"]);

/** Collects an engine progress stream as lines; see the module comment. */
export class EngineOutput {
  readonly #lines: string[] = [];
  readonly #max: number;
  readonly #onLine: ((line: string) => void) | undefined;
  /** The last status shown per layer, so a pull's ticks print once. */
  readonly #pulls = new Map<string, string>();
  #partial = "";
  #error: string | undefined;
  #imageId: string | undefined;

  /** `max`: how many lines the log keeps (the last ones). */
  constructor(onLine?: (line: string) => void, max = 2_000) {
    this.#onLine = onLine;
    this.#max = max;
  }

  /** Feeds one event. */
  event(event: EngineEvent): void {
    if (event.error !== undefined || event.errorDetail?.message !== undefined) {
      this.#error = (event.errorDetail?.message ?? event.error ?? "").trim();
      this.#line(`error: ${this.#error}`);
      return;
    }
    if (event.aux?.ID) this.#imageId = event.aux.ID;
    if (typeof event.stream === "string") {
      // Steps and output arrive in chunks that may split or join lines.
      const text = this.#partial + event.stream;
      const parts = text.split("\n");
      this.#partial = parts.pop() ?? "";
      for (const part of parts) this.#line(lastRedraw(part));
      return;
    }
    if (typeof event.status === "string") {
      const status = event.status.trim();
      if (event.id) {
        const shown = this.#pulls.get(event.id);
        if (TICKING.has(status) && shown === status) return;
        this.#pulls.set(event.id, status);
        this.#line(`${event.id}: ${status}`);
      } else this.#line(status);
    }
  }

  /** Emits a last line that had no newline. */
  flush(): void {
    if (this.#partial) this.#line(lastRedraw(this.#partial));
    this.#partial = "";
  }

  /** The lines kept (at most `max`, the last ones). */
  get lines(): string[] {
    return [...this.#lines];
  }

  /** The engine's error message, if the stream reported one. */
  get error(): string | undefined {
    return this.#error;
  }

  /** The built image's id (`sha256:…`), when the engine said it. */
  get imageId(): string | undefined {
    return this.#imageId;
  }

  #line(raw: string): void {
    // The classic builder paints a step's stderr red with terminal escapes; logs and spinners want text.
    const line = raw.replace(ANSI, "").trimEnd();
    if (line.trim() === "" || NOISE.some((re) => re.test(line))) return;
    this.#lines.push(line);
    if (this.#lines.length > this.#max) this.#lines.shift();
    this.#onLine?.(line);
  }
}

/** Progress bars redraw a line with `\r`: what a terminal would show is the text after the last one. */
function lastRedraw(line: string): string {
  const parts = line.split("\r").filter((p) => p.trim() !== "");
  return parts.at(-1) ?? "";
}
