import { defineConfig } from "vitest/config";

/** The suites that run on the swarm lab (scripts/swarm-lab.sh up). */
const SWARM_SUITES = ["test/integration/swarm-*.test.ts", "test/integration/platform-swarm.test.ts"];

export default defineConfig({
  test: {
    projects: [
      {
        // Unit tests first, then integration: projects with different worker counts must run in separate groups.
        test: {
          name: "unit",
          include: ["src/**/*.test.ts"],
          testTimeout: 15_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"],
          exclude: SWARM_SUITES,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Integration suites start real daemons and sandboxes; two cores do not like many at once.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: "swarm",
          include: SWARM_SUITES,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // One at a time: they share the lab, and the cluster suite kills and restarts its nodes.
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
