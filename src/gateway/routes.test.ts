import { describe, expect, it } from "vitest";
import { isFuncdError } from "../shared/errors.js";
import { RouteTable } from "./routes.js";

function table() {
  const routes = new RouteTable();
  routes.rebuild([
    { name: "sum", routes: ["/sum"] },
    { name: "mul", routes: ["/mul", "/math/mul"] },
    { name: "deep", routes: ["/a/b/c"] },
    { name: "hello", routes: [] },
  ]);
  return routes;
}

describe("route table", () => {
  it.each([
    ["/function/hello", "hello", "/", "/function/hello"],
    ["/function/hello/", "hello", "/", "/function/hello"],
    ["/function/hello/x/y", "hello", "/x/y", "/function/hello"],
    ["/sum", "sum", "/", "/sum"],
    ["/sum/", "sum", "/", "/sum"],
    ["/sum/more/path", "sum", "/more/path", "/sum"],
    ["/math/mul", "mul", "/", "/math/mul"],
    ["/a/b/c/d/e", "deep", "/d/e", "/a/b/c"],
  ])("%s goes to %s with sub-path %s", (path, fn, subPath, prefix) => {
    expect(table().match(path)).toEqual({ functionName: fn, subPath, prefix });
  });

  it.each(["/summary", "/a/b", "/math", "/nothing", "/"])("%s matches no custom route", (path) => {
    expect(table().match(path)).toBeUndefined();
  });

  it("a route claimed by two functions is a conflict and leaves the old table in place", () => {
    const routes = table();
    let error: unknown;
    try {
      routes.rebuild([
        { name: "sum", routes: ["/x"] },
        { name: "other", routes: ["/x"] },
      ]);
    } catch (err) {
      error = err;
    }
    expect(isFuncdError(error, "ROUTE_CONFLICT")).toBe(true);
    expect(routes.match("/sum")?.functionName).toBe("sum");
  });

  it("reports which function owns a route", () => {
    expect(table().ownerOf("/mul")).toBe("mul");
    expect(table().ownerOf("/div")).toBeUndefined();
  });
});
