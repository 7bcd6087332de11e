/** The pipeline behind the raw front end: a RequestContext made from a FrontRequest, and the Downstream that reads it. */
import { type Downstream, type HandlerView, newContext, type RequestContext } from "../proxy/context.ts";
import { runPipeline } from "../proxy/pipeline.ts";
import { Fields } from "../lib/fields.ts";
import { log } from "../observability/log.ts";
import { unroutedStats } from "../proxy/unrouted.ts";
import type { RequestHead } from "./h1-request.ts";
import type { FrontHandler, FrontRequest } from "./h1-server.ts";

const front = (ctx: RequestContext) => ctx.source as FrontRequest;

/** FRONT_DOWNSTREAM reads a request's client side from the raw front end's FrontRequest; one object for every request. */
const FRONT_DOWNSTREAM: Downstream = {
  peer: (ctx) => front(ctx).client,
  tlsName: (ctx) => front(ctx).tlsName,
  signal: (ctx) => front(ctx).signal,
  body: (ctx) => front(ctx).body,
  // The raw front end runs no idle timer while a request is answered: nothing to raise.
  keepWaiting: () => undefined,
  // Upgrades through the raw front end become a byte pipe after the upstream's 101 (pipe, below), not a Bun WebSocket.
  upgrade: () => false,
  pipe: (ctx, head, early, upstream, done) => front(ctx).pipe(head, early, upstream, done),
};

/**
 * requestFields are the request's fields as the pipeline sees them, in order; Content-Length is the parser's number, once, where it first came (RFC 9110
 * §8.6: "0070" or "70, 70" are forwarded as "70").
 */
function requestFields(h: RequestHead): Fields {
  const fields = h.fields;
  const names: string[] = [];
  const values: string[] = [];
  let length = false;
  for (let i = 0; i < fields.length; i++) {
    const [name, value] = fields[i]!;
    if (name === "content-length") {
      if (length) continue;
      length = true;
      names.push(name);
      values.push(String(h.length));
      continue;
    }
    names.push(name);
    values.push(value);
  }
  return new Fields(names, values);
}

/** frontHandler is the raw front end's handler for a public listener: the live generation's view read once per request, then the pipeline's phases. */
export function frontHandler(view: () => HandlerView, scheme: "http" | "https"): FrontHandler {
  return (req: FrontRequest) => {
    const v = view();
    const h = req.head;
    const headers = requestFields(h);
    // RFC 9112 §3.2.2: the host is an absolute-form target's authority, else Host.
    const ctx = newContext(h.method, headers, FRONT_DOWNSTREAM, req, undefined, scheme, h.host, h.path, h.query, v.hop);
    return runPipeline(ctx, v);
  };
}

/**
 * frontRefused records a request the front end refused before any route saw it (a malformed head, a late one, a connection past a cap): counted under the
 * route "-" with its status, and one log line (with the access log) saying why.
 */
export function frontRefused(status: number, reason: string, client: string): void {
  unroutedStats().record(status, 0);
  if (log.access) log.info("refused", { client, status, reason });
}
