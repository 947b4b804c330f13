import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { FuncdError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { MAX_SECRET_BYTES, SECRET_NAME } from "../shared/secret-names.js";
import type { SecretMeta, Store } from "../store/types.js";

export interface SecretRoutesDeps {
  store: Store;
  /** Replaces a function's instances so they read the secrets afresh (`Fleet.recycle`). */
  recycle: (functionName: string) => number;
  clock: { now(): number };
  logger: Logger;
}

const NameParams = z.object({
  name: z
    .string()
    .regex(
      SECRET_NAME,
      "a secret name is letters, digits, '_', '.' and '-', starting with a letter or digit (max 63)",
    ),
});
const PutBody = z.union([
  z.object({ value: z.string().describe("the value, as text") }).strict(),
  z.object({ base64: z.string().describe("the value's bytes, base64") }).strict(),
]);

const tags = ["secrets"];

/** The names of the functions whose current spec uses `name`. */
function usedBy(store: Store, name: string): string[] {
  return store.functions
    .list()
    .filter((f) => f.spec.secrets?.includes(name) === true)
    .map((f) => f.name);
}

/** What the API shows of a secret: never its value. */
function secretView(meta: SecretMeta, users: string[]) {
  return {
    name: meta.name,
    createdAt: new Date(meta.createdAt).toISOString(),
    updatedAt: new Date(meta.updatedAt).toISOString(),
    usedBy: users,
  };
}

function notFound(name: string): FuncdError {
  return new FuncdError("SECRET_NOT_FOUND", `No secret named "${name}"`);
}

/**
 * Secrets: set (create or replace) a value, list and inspect them — names, dates and the functions using
 * them, never a value — and delete one no function uses. Setting a value recycles the instances of the
 * functions using it, so they read it without a redeploy.
 */
export function secretRoutes(deps: SecretRoutesDeps) {
  const { store } = deps;

  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();

    app.get(
      "/api/v1/secrets",
      { schema: { tags, summary: "List secrets (names and dates, no values)" } },
      () => {
        const functions = store.functions.list();
        return {
          items: store.secrets.list().map((meta) =>
            secretView(
              meta,
              functions.filter((f) => f.spec.secrets?.includes(meta.name) === true).map((f) => f.name),
            ),
          ),
        };
      },
    );

    app.get(
      "/api/v1/secrets/:name",
      { schema: { tags, summary: "A secret's metadata (never its value)", params: NameParams } },
      (request) => {
        const { name } = request.params;
        const meta = store.secrets.get(name);
        if (!meta) throw notFound(name);
        return secretView(meta, usedBy(store, name));
      },
    );

    app.put(
      "/api/v1/secrets/:name",
      {
        schema: {
          tags,
          summary:
            "Create (201) or replace (200) a secret's value; instances of functions using it are replaced",
          params: NameParams,
          body: PutBody,
        },
      },
      async (request, reply) => {
        const { name } = request.params;
        const body = request.body;
        const value = "value" in body ? Buffer.from(body.value, "utf8") : Buffer.from(body.base64, "base64");
        if (value.length > MAX_SECRET_BYTES) {
          throw new FuncdError(
            "PAYLOAD_TOO_LARGE",
            `Secret "${name}" is ${value.length} bytes; a secret may hold at most ${MAX_SECRET_BYTES}`,
          );
        }
        const { created, meta } = store.secrets.put(name, value, deps.clock.now());
        const users = usedBy(store, name);
        // Their instances hold the old value (as a file and an env var): new ones read the new one.
        for (const fn of users) deps.recycle(fn);
        deps.logger.info(
          { secret: name, created, recycled: users },
          created ? "secret created" : "secret updated",
        );
        return reply.code(created ? 201 : 200).send({ ...secretView(meta, users), recycled: users });
      },
    );

    app.delete(
      "/api/v1/secrets/:name",
      { schema: { tags, summary: "Delete a secret no function uses (409 otherwise)", params: NameParams } },
      async (request, reply) => {
        const { name } = request.params;
        if (!store.secrets.get(name)) throw notFound(name);
        const users = usedBy(store, name);
        if (users.length > 0) {
          throw new FuncdError(
            "SECRET_IN_USE",
            `Secret "${name}" is used by function${users.length === 1 ? "" : "s"} ${users.map((u) => `"${u}"`).join(", ")}; deploy ${users.length === 1 ? "it" : "them"} without it, or delete ${users.length === 1 ? "it" : "them"}, first`,
            { extra: { usedBy: users } },
          );
        }
        store.secrets.delete(name);
        deps.logger.info({ secret: name }, "secret deleted");
        return reply.code(204).send();
      },
    );
  };
}
