export { assertSwarmManager, SwarmDriver, type SwarmDriverOptions } from "./swarm-driver.js";
