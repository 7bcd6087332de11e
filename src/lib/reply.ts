/** Reply: the gateway's own response on its hot paths (a cache hit, a proxied answer), status, Fields and body; the raw front end writes it as it is, Bun.serve gets a Response made from it. */
import type { Fields } from "./fields.ts";

/** ReplyBody is a body in memory, a stream, or none. */
export type ReplyBody = Uint8Array | ReadableStream<Uint8Array> | null;

/**
 * Reply is a response made by the gateway itself from what it holds (the upstream's head and body, a stored entry): a plain object, where a Response would be
 * a native object with a copy of its headers and (for bytes) of its body. The bytes of a body in memory must not change once in a Reply.
 */
export class Reply {
  /** own marks an answer the gateway made itself (its errors and refusals), which a site's error pages may replace. */
  own = false;

  constructor(
    public status: number,
    public headers: Fields,
    public body: ReplyBody = null,
    public statusText = "",
  ) {}

  /** bytes reads the whole body (none: empty). */
  bytes(): Promise<Uint8Array> {
    const b = this.body;
    if (b === null) return Promise.resolve(new Uint8Array(0));
    if (b instanceof Uint8Array) return Promise.resolve(b);
    return Promise.resolve(Bun.readableStreamToBytes(b));
  }

  /** discard drops a body nobody will read (a stream is cancelled, so its upstream connection is released). */
  discard(): void {
    const b = this.body;
    if (b !== null && !(b instanceof Uint8Array)) void b.cancel().catch(() => undefined);
  }

  /** toResponse is this reply as a Response, for Bun.serve's listeners. */
  toResponse(): Response {
    return new Response(this.body, { status: this.status, statusText: this.statusText, headers: this.headers.toHeaders() });
  }
}

/** Answered is what a route or filter answers: the gateway's own Reply, or a Response (static files, redirects, errors, ACME answers). */
export type Answered = Reply | Response;

/** toResponse is an answer as a Response (for a listener on Bun.serve). */
export function toResponse(res: Answered): Response {
  return res instanceof Reply ? res.toResponse() : res;
}
