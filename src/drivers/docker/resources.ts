/**
 * Resource profiles: the same presets as Kyma Serverless's function resources, so a function that says
 * `profile: M` gets what it would get there. funcd enforces limits, not requests (there is no scheduler
 * to reserve for), so each profile is Kyma's *limit* pair.
 *
 * Source: kyma-project/serverless, docs/user/technical-reference/07-80-available-presets.md (the
 * buildless-era table). Older Serverless charts had XS at 100m / 128Mi; the current table raised it to
 * 150m / 256Mi, which is what is used here.
 */
import { FuncdError } from "../../shared/errors.js";

/** The profile names, smallest first. */
export const PROFILE_NAMES = ["XS", "S", "M", "L", "XL"] as const;

export type ResourceProfile = (typeof PROFILE_NAMES)[number];

export interface Resources {
  /** Memory limit in MiB (no swap beyond it). */
  memoryMb: number;
  /** CPU limit in cores (0.5 = half a core); absent = no limit. */
  cpus?: number;
}

/** Kyma Serverless's function presets, limit values: memory in MiB, CPU in cores. */
export const RESOURCE_PROFILES: Readonly<Record<ResourceProfile, Readonly<Required<Resources>>>> = {
  XS: { memoryMb: 256, cpus: 0.15 },
  S: { memoryMb: 256, cpus: 0.2 },
  M: { memoryMb: 512, cpus: 0.4 },
  L: { memoryMb: 1024, cpus: 0.8 },
  XL: { memoryMb: 2048, cpus: 1.6 },
};

/** The memory limit of a function that names neither a memory value nor a profile. */
export const DEFAULT_MEMORY_MB = 256;

/** True when `name` is one of the profile names (case-sensitive, as Kyma's labels are). */
export function isResourceProfile(name: string): name is ResourceProfile {
  return (PROFILE_NAMES as readonly string[]).includes(name);
}

/** A profile's limits. */
export function profileResources(profile: ResourceProfile): Required<Resources> {
  return { ...RESOURCE_PROFILES[profile] };
}

/**
 * A function's limits from its spec: explicit `memory` (MiB) and `cpu` win over the profile's values;
 * without either, memory is `DEFAULT_MEMORY_MB` and CPU is unlimited. `cpu` is in cores (`0.5`) or, as
 * Kubernetes writes it, a string of cores (`"0.5"`) or millicores (`"500m"`).
 */
export function resolveResources(input: {
  profile?: string | undefined;
  memory?: number | undefined;
  cpu?: number | string | undefined;
}): Resources {
  let preset: Required<Resources> | undefined;
  if (input.profile !== undefined) {
    if (!isResourceProfile(input.profile)) {
      throw new FuncdError(
        "VALIDATION_FAILED",
        `Resource profile "${input.profile}" does not exist: use one of ${PROFILE_NAMES.join(", ")}`,
      );
    }
    preset = profileResources(input.profile);
  }
  const memoryMb = input.memory ?? preset?.memoryMb ?? DEFAULT_MEMORY_MB;
  if (!Number.isInteger(memoryMb) || memoryMb < 6) {
    // 6 MiB is the smallest memory limit Docker accepts.
    throw new FuncdError("VALIDATION_FAILED", `Memory limit ${memoryMb} is not a whole number of MiB ≥ 6`);
  }
  const cpus = input.cpu === undefined ? preset?.cpus : parseCpu(input.cpu);
  return cpus === undefined ? { memoryMb } : { memoryMb, cpus };
}

/** Cores from `0.5`, `"0.5"` or `"500m"`; rejects anything not positive. */
export function parseCpu(value: number | string): number {
  let cores = Number.NaN;
  if (typeof value === "number") cores = value;
  else if (/^\d+m$/.test(value.trim())) cores = Number(value.trim().slice(0, -1)) / 1000;
  else if (/^\d+(\.\d+)?$/.test(value.trim())) cores = Number(value.trim());
  // Docker's NanoCpus is an integer: below a millicore (1e6 nanocpus) there is nothing to limit to.
  if (!Number.isFinite(cores) || cores < 0.001) {
    throw new FuncdError(
      "VALIDATION_FAILED",
      `CPU limit ${JSON.stringify(value)} is not a number of cores (0.5) or millicores ("500m") ≥ 1m`,
    );
  }
  return cores;
}

/** Docker's `NanoCpus` for a CPU limit in cores. */
export function nanoCpus(cpus: number): number {
  return Math.round(cpus * 1e9);
}
