import { describe, expect, it } from "vitest";
import { FuncdError, problemType } from "../shared/errors.js";
import { CliError, cliErrorFromProblem, toCliError, usageError } from "./errors.js";

describe("cliErrorFromProblem", () => {
  it("maps the problem type back to the registry code and keeps title, detail, status", () => {
    const problem = new FuncdError("FUNCTION_NOT_FOUND", 'No function named "sum"').toProblem(
      "/api/v1/functions/sum",
    );
    const error = cliErrorFromProblem(problem, 404);
    expect(error).toBeInstanceOf(CliError);
    expect(error).toMatchObject({
      code: "FUNCTION_NOT_FOUND",
      title: "Function not found",
      detail: 'No function named "sum"',
      status: 404,
      exitCode: 1,
    });
  });

  it("keeps extra members such as validation errors and deploy logs", () => {
    const error = cliErrorFromProblem(
      {
        type: problemType("VALIDATION_FAILED"),
        title: "The request does not match the schema",
        status: 400,
        detail: "2 problems",
        code: "VALIDATION_FAILED",
        errors: [{ path: "memory", message: "too small" }],
        logs: ["npm ERR! 404"],
      },
      400,
    );
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.extra).toEqual({
      errors: [{ path: "memory", message: "too small" }],
      logs: ["npm ERR! 404"],
    });
  });

  it("falls back to the code member, then to the HTTP status", () => {
    expect(cliErrorFromProblem({ type: "about:blank", code: "ROUTE_CONFLICT", detail: "x" }, 409).code).toBe(
      "ROUTE_CONFLICT",
    );
    expect(cliErrorFromProblem({ type: "about:blank", title: "Nope" }, 401)).toMatchObject({
      code: "UNAUTHORIZED",
      title: "Nope",
    });
    expect(cliErrorFromProblem({ code: "SOMETHING_NEW" }, 503).code).toBe("FUNCTION_UNAVAILABLE");
    expect(cliErrorFromProblem({}, 418).code).toBe("BAD_REQUEST");
    expect(cliErrorFromProblem({}, 599).code).toBe("INTERNAL");
  });

  it("uses a non-JSON body as the detail", () => {
    expect(cliErrorFromProblem("<html>Bad Gateway</html>\n", 502)).toMatchObject({
      code: "UPSTREAM_ERROR",
      detail: "<html>Bad Gateway</html>",
      status: 502,
    });
  });
});

describe("toCliError", () => {
  it("exits 2 for usage errors and 1 otherwise", () => {
    expect(usageError("bad flag").exitCode).toBe(2);
    expect(toCliError(new Error("boom"))).toMatchObject({ code: "INTERNAL", detail: "boom", exitCode: 1 });
  });

  it("keeps the code of a FuncdError thrown in-process", () => {
    const error = toCliError(
      new FuncdError("CONFIG_INVALID", "port: expected a number", { extra: { errors: [] } }),
    );
    expect(error).toMatchObject({ code: "CONFIG_INVALID", title: "Invalid configuration", status: 500 });
  });
});
