/** The Docker driver: hardened containers on a Docker engine (or Podman's compatible socket). */

export { DockerDriver, type DockerDriverOptions } from "./docker-driver.js";
export { connectEngine, type Engine, LABELS } from "./engine.js";
export {
  DEFAULT_MEMORY_MB,
  isResourceProfile,
  PROFILE_NAMES,
  profileResources,
  RESOURCE_PROFILES,
  type ResourceProfile,
  type Resources,
  resolveResources,
} from "./resources.js";
