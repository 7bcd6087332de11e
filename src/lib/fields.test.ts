import { expect, test } from "bun:test";
import { Fields } from "./fields.ts";

test("get joins repeated fields as Headers does; names are case-insensitive; getAll keeps lines apart", () => {
  const f = Fields.from([
    ["Set-Cookie", "a=1"],
    ["x-a", "1"],
    ["set-cookie", "b=2"],
  ]);
  expect(f.get("set-cookie")).toBe("a=1, b=2");
  expect(f.get("SET-COOKIE")).toBe("a=1, b=2");
  expect(f.getAll("set-cookie")).toEqual(["a=1", "b=2"]);
  expect(f.get("missing")).toBeNull();
  expect(f.has("X-A")).toBe(true);
  expect([...f]).toEqual([
    ["set-cookie", "a=1"],
    ["x-a", "1"],
    ["set-cookie", "b=2"],
  ]);
});

test("set replaces every line of a field where its first was; delete removes them all; order stays", () => {
  const f = Fields.from([
    ["a", "1"],
    ["b", "2"],
    ["a", "3"],
    ["c", "4"],
  ]);
  f.set("A", "x");
  expect([...f]).toEqual([
    ["a", "x"],
    ["b", "2"],
    ["c", "4"],
  ]);
  f.set("d", "5");
  f.append("b", "6");
  f.delete("B");
  expect([...f]).toEqual([
    ["a", "x"],
    ["c", "4"],
    ["d", "5"],
  ]);
  expect(f.size).toBe(3);
});

test("clone is independent; from copies Headers (Set-Cookie lines apart), records and Fields; toHeaders gives them back", () => {
  const h = new Headers({ "content-type": "text/plain" });
  h.append("set-cookie", "a=1");
  h.append("set-cookie", "b=2");
  const f = Fields.from(h);
  expect(f.getAll("set-cookie")).toEqual(["a=1", "b=2"]);
  const c = f.clone();
  c.set("content-type", "text/html");
  expect(f.get("content-type")).toBe("text/plain");
  expect(Fields.from({ "X-B": "1" }).get("x-b")).toBe("1");
  expect(Fields.from(f).getAll("set-cookie")).toEqual(["a=1", "b=2"]);
  const back = f.toHeaders();
  expect(back.getSetCookie()).toEqual(["a=1", "b=2"]);
  expect(back.get("content-type")).toBe("text/plain");
});
