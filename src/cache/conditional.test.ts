import { expect, test } from "bun:test";
import { evaluateConditional, parseEntityTags } from "./conditional.ts";

const LM = "Mon, 01 Jan 2024 12:00:00 GMT";
const BEFORE = "Sun, 31 Dec 2023 12:00:00 GMT";
const AFTER = "Tue, 02 Jan 2024 12:00:00 GMT";
const stored = new Headers({ etag: '"v1"', "last-modified": LM });
const weakStored = new Headers({ etag: 'W/"v1"', "last-modified": LM });
const ev = (h: Record<string, string>, s: Headers = stored) => evaluateConditional(new Headers(h), s);

test("no preconditions: full", () => {
  expect(ev({})).toBe("full");
});

test("If-None-Match uses the weak comparison; * matches a stored response (RFC 9110 §13.1.2)", () => {
  expect(ev({ "if-none-match": '"v1"' })).toBe(304);
  expect(ev({ "if-none-match": 'W/"v1"' })).toBe(304);
  expect(ev({ "if-none-match": '"v1"' }, weakStored)).toBe(304);
  expect(ev({ "if-none-match": '"a", W/"v1", "b"' })).toBe(304);
  expect(ev({ "if-none-match": "*" })).toBe(304);
  expect(ev({ "if-none-match": '"v2"' })).toBe("full");
  expect(ev({ "if-none-match": '"v1"' }, new Headers({ "last-modified": LM }))).toBe("full");
});

test("If-None-Match takes precedence: If-Modified-Since is then ignored (RFC 9110 §13.2.2 step 3)", () => {
  expect(ev({ "if-none-match": '"v2"', "if-modified-since": AFTER })).toBe("full");
  expect(ev({ "if-none-match": '"v1"', "if-modified-since": BEFORE })).toBe(304);
});

test("If-Modified-Since: 304 when Last-Modified is not later (RFC 9110 §13.1.3)", () => {
  expect(ev({ "if-modified-since": LM })).toBe(304);
  expect(ev({ "if-modified-since": AFTER })).toBe(304);
  expect(ev({ "if-modified-since": BEFORE })).toBe("full");
});

test("If-Modified-Since: invalid dates ignored", () => {
  for (const bad of ["yesterday", "0", `${AFTER}, ${AFTER}`]) expect(ev({ "if-modified-since": bad })).toBe("full");
});

test("If-Modified-Since without Last-Modified: the stored Date, else the time received (RFC 9111 §4.3.2)", () => {
  const dated = new Headers({ etag: '"v1"', date: LM });
  expect(ev({ "if-modified-since": AFTER }, dated)).toBe(304);
  expect(ev({ "if-modified-since": LM }, dated)).toBe(304);
  expect(ev({ "if-modified-since": BEFORE }, dated)).toBe("full");
  // Last-Modified, when present, is what counts, not Date.
  expect(ev({ "if-modified-since": LM }, new Headers({ "last-modified": AFTER, date: LM }))).toBe("full");
  const bare = new Headers({ etag: '"v1"' });
  const received = Date.parse(LM);
  expect(evaluateConditional(new Headers({ "if-modified-since": AFTER }), bare, received)).toBe(304);
  expect(evaluateConditional(new Headers({ "if-modified-since": BEFORE }), bare, received)).toBe("full");
  expect(evaluateConditional(new Headers({ "if-modified-since": AFTER }), new Headers({ date: "garbage" }), received)).toBe(304);
  expect(ev({ "if-modified-since": AFTER }, bare)).toBe("full"); // nothing to compare with
});

test("If-Match uses the strong comparison; failing gives 412 (RFC 9110 §13.1.1)", () => {
  expect(ev({ "if-match": '"v1"' })).toBe("full");
  expect(ev({ "if-match": '"x", "v1"' })).toBe("full");
  expect(ev({ "if-match": "*" })).toBe("full");
  expect(ev({ "if-match": '"v2"' })).toBe(412);
  expect(ev({ "if-match": 'W/"v1"' })).toBe(412);
  expect(ev({ "if-match": '"v1"' }, weakStored)).toBe(412);
  expect(ev({ "if-match": '"v1"' }, new Headers({ "last-modified": LM }))).toBe(412);
});

test("If-Unmodified-Since: 412 when modified after it; ignored with If-Match, when invalid or without Last-Modified (§13.1.4)", () => {
  expect(ev({ "if-unmodified-since": BEFORE })).toBe(412);
  expect(ev({ "if-unmodified-since": LM })).toBe("full");
  expect(ev({ "if-unmodified-since": BEFORE, "if-match": '"v1"' })).toBe("full");
  expect(ev({ "if-unmodified-since": "nonsense" })).toBe("full");
  expect(ev({ "if-unmodified-since": BEFORE }, new Headers({ etag: '"v1"' }))).toBe("full");
});

test("412 preconditions are evaluated before 304 ones (RFC 9110 §13.2.2 steps 1-2 before 3-4)", () => {
  expect(ev({ "if-match": '"v2"', "if-none-match": '"v1"' })).toBe(412);
  expect(ev({ "if-unmodified-since": BEFORE, "if-modified-since": AFTER })).toBe(412);
  expect(ev({ "if-match": '"v1"', "if-none-match": '"v1"' })).toBe(304);
});

test("parseEntityTags: quoted lists with commas inside tags, empty members, *, and lenient bare tags", () => {
  expect(parseEntityTags(' "a,b" , W/"c",, ""')).toEqual([
    { weak: false, tag: '"a,b"' },
    { weak: true, tag: '"c"' },
    { weak: false, tag: '""' },
  ]);
  expect(parseEntityTags(" * ")).toBe("*");
  expect(parseEntityTags("abc, W/def")).toEqual([
    { weak: false, tag: "abc" },
    { weak: true, tag: "def" },
  ]);
  expect(ev({ "if-none-match": "abc" }, new Headers({ etag: "abc" }))).toBe(304);
  expect(ev({ "if-none-match": '"abc"' }, new Headers({ etag: "abc" }))).toBe("full");
});
