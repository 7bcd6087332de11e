/** Answering from a stored response: the client's conditionals (304, 412), a byte range, HEAD, Age and Cache-Status (RFC 9211). */
import { type FieldReader, Fields } from "../lib/fields.ts";
import { Reply } from "../lib/reply.ts";
import { ifRangeHolds, parseRange } from "../lib/http-range.ts";
import { compress, compressAsync, negotiate, type Coding } from "../lib/compress.ts";
import { evaluateConditional } from "./conditional.ts";
import { ageHeader } from "./policy.ts";
import { crcCheck } from "./disk/object-file.ts";
import type { DiskBody, Entry } from "./store.ts";

/** fileStream streams bytes [start, end) of a body on disk. */
function fileStream(f: DiskBody, start: number, end: number): ReadableStream<Uint8Array> {
  return Bun.file(f.path)
    .slice(f.offset + start, f.offset + end)
    .stream();
}

/** CACHE_NAME identifies this cache in Cache-Status (RFC 9211 §2). */
export const CACHE_NAME = "gatehouse";

/**
 * Asker is the part of a request that answering from the store reads; bytesOut is set to the body bytes the answer carries (for the access log). The proxy's
 * RequestContext is one.
 */
export type Asker = {
  readonly id: string;
  readonly method: string;
  readonly headers: FieldReader;
  bytesOut: number;
};

/** Conditionals are the client's validators and range, kept aside while the cache asks the origin for a full response. */
export type Conditionals = { readonly headers: Fields; readonly any: boolean };

const CONDITIONAL_FIELDS = ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"];

/** isConditionals tells the client's conditionals kept aside from a request's own fields. */
function isConditionals(c: Conditionals | FieldReader): c is Conditionals {
  return typeof (c as Partial<Conditionals>).any === "boolean";
}

/** asksConditionally says whether a request carries a validator or a range (a few header lookups; no parsing). */
function asksConditionally(h: FieldReader): boolean {
  for (const name of CONDITIONAL_FIELDS) if (h.get(name) !== null) return true;
  return false;
}

/** takeConditionals removes the client's conditional and range fields from h (so the origin sends a full, storable response) and returns them. */
export function takeConditionals(h: Fields): Conditionals {
  const kept = new Fields();
  let any = false;
  for (const name of CONDITIONAL_FIELDS) {
    const v = h.get(name);
    if (v !== null) {
      kept.set(name, v);
      h.delete(name);
      any = true;
    }
  }
  return { headers: kept, any };
}

/**
 * SYNC_LIMIT: bodies up to this are compressed on the request that first asks (a millisecond or so); larger ones in the background while that request gets
 * identity.
 */
const SYNC_LIMIT = 128 * 1024;
const compressing = new WeakMap<Entry, Set<Coding>>();

/** encodedBody returns e's body in `coding`, making it once per entry (grown() then re-accounts the entry), or undefined while a large one is being made. */
function encodedBody(e: Entry, coding: Coding, grown: () => void): Uint8Array | undefined {
  const done = e.encoded.get(coding);
  if (done !== undefined) return done;
  if (e.body.byteLength <= SYNC_LIMIT) {
    const body = compress(e.body, coding);
    e.encoded.set(coding, body);
    grown();
    return body;
  }
  let busy = compressing.get(e);
  if (busy === undefined) compressing.set(e, (busy = new Set()));
  if (!busy.has(coding)) {
    busy.add(coding);
    void compressAsync(e.body, coding)
      .then((body) => {
        e.encoded.set(coding, body);
        grown();
      })
      .catch(() => undefined)
      .finally(() => busy.delete(coding));
  }
  return undefined;
}

function weakEtag(h: Fields): void {
  const etag = h.get("etag");
  if (etag !== null && !etag.startsWith("W/")) h.set("etag", `W/${etag}`);
}

/**
 * serveStored answers the request from e: 304/412 for the client's conditionals, 206/416 for a range of a 200, a compressed body for clients that accept one,
 * the body unless HEAD; Age and Cache-Status set, ctx.bytesOut set.
 */
export function serveStored(ctx: Asker, e: Entry, age: number, status: string, cond: Conditionals | FieldReader, grown: () => void = () => undefined): Reply {
  const kept = isConditionals(cond);
  const req = kept ? cond.headers : cond;
  const h = e.headers.clone();
  h.set("age", ageHeader(age));
  h.set("cache-status", `${CACHE_NAME}; ${status}`);
  h.set("x-request-id", ctx.id);
  const head = ctx.method === "HEAD";
  // RFC 9110 §8.4, §12.5.3: a compressible entry varies on Accept-Encoding whatever this client gets; its coded form has a weak ETag.
  let coding: Coding | undefined;
  if (e.compressible) {
    if (!/(^|,)\s*accept-encoding\s*(,|$)/i.test(h.get("vary") ?? "")) h.append("vary", "accept-encoding");
    coding = negotiate(ctx.headers.get("accept-encoding"));
  }
  if (e.status === 200 && (kept ? cond.any : asksConditionally(req))) {
    const c = evaluateConditional(req, e.headers);
    if (c !== "full") {
      if (coding !== undefined) weakEtag(h); // the validator the client holds is of the coded form (§15.4.5)
      // No body: RFC 9110 §15.4.5 (304 carries the validators, not the content's description); 412 is an error without content.
      for (const name of ["content-length", "content-type", "content-encoding", "content-range"]) h.delete(name);
      ctx.bytesOut = 0;
      return new Reply(c, h);
    }
    // Ranges are of the identity body, with its strong ETag: no compression of ranges.
    const range = head ? null : req.get("range");
    if (range !== null && ifRangeHolds(req.get("if-range"), e.headers.get("etag"), e.headers.get("last-modified"))) {
      const size = e.file?.length ?? e.body.byteLength;
      const r = parseRange(range, size);
      if (r === "unsatisfiable") {
        h.set("content-range", `bytes */${size}`);
        h.delete("content-length");
        ctx.bytesOut = 0;
        return new Reply(416, h);
      }
      if (r !== undefined) {
        const [start, end] = r;
        h.set("content-range", `bytes ${start}-${end}/${size}`);
        h.set("content-length", String(end - start + 1));
        ctx.bytesOut = end - start + 1;
        return new Reply(206, h, e.file ? fileStream(e.file, start, end + 1) : e.body.subarray(start, end + 1));
      }
    }
  }
  if (e.file !== undefined) {
    // On disk and too large to read whole: streamed, its CRC checked on the way (never compressed: compressible is off for these).
    ctx.bytesOut = head ? 0 : e.file.length;
    const f = e.file;
    return new Reply(e.status, h, head || f.length === 0 ? null : crcCheck(fileStream(f, 0, f.length), f.crc, f.length, f.damaged));
  }
  const coded = coding === undefined ? undefined : encodedBody(e, coding, grown);
  if (coded !== undefined) {
    h.set("content-encoding", coding!);
    h.set("content-length", String(coded.byteLength));
    weakEtag(h);
  }
  const body = coded ?? e.body;
  const bytes = head ? 0 : body.byteLength;
  ctx.bytesOut = bytes;
  return new Reply(e.status, h, head || body.byteLength === 0 ? null : body);
}
