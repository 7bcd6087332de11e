/** The pipeline behind the raw front end: a RequestContext made from a FrontRequest, and the Downstream that reads it. */
import type { Downstream, HandlerView, RequestContext } from "../proxy/context.ts";
import { runPipeline } from "../proxy/pipeline.ts";
import { requestId } from "../proxy/request-id.ts";
import type { FrontHandler, FrontRequest } from "./h1-server.ts";

const front = (ctx: RequestContext) => ctx.source as FrontRequest;

/** FRONT_DOWNSTREAM reads a request's client side from the raw front end's FrontRequest; one object for every request. */
const FRONT_DOWNSTREAM: Downstream = {
  peer: (ctx) => front(ctx).client,
  signal: (ctx) => front(ctx).signal,
  body: (ctx) => front(ctx).body,
  // The raw front end runs no idle timer while a request is answered: nothing to raise.
  keepWaiting: () => undefined,
  // WebSockets through the raw front end become a byte pipe after the upstream's 101 (issue 12, item 4): not yet.
  upgrade: () => false,
};

/** notUpgraded answers a WebSocket request the raw front end cannot carry yet. */
const notUpgraded = () => new Response("WebSocket upgrades are not served on this listener yet\n", { status: 501 });

/** frontHandler is the raw front end's handler for a public listener: the live generation's view read once per request, then the pipeline's phases. */
export function frontHandler(view: () => HandlerView, scheme: "http" | "https"): FrontHandler {
  return (req: FrontRequest) => {
    const v = view();
    const h = req.head;
    const headers = new Headers(h.fields as [string, string][]);
    const ctx: RequestContext = {
      method: h.method,
      headers,
      downstream: FRONT_DOWNSTREAM,
      source: req,
      connection: undefined,
      id: requestId(headers.get("x-request-id")),
      start: performance.now(),
      peer: undefined,
      scheme,
      // RFC 9112 §3.2.2: an absolute-form target's authority, else Host.
      host: h.host,
      path: h.path,
      query: h.query,
      hop: v.hop,
      route: undefined,
      upstream: undefined,
      upstreamMs: 0,
      bytesIn: 0,
      status: 0,
      bytesOut: 0,
      streamed: undefined,
      responded: false,
      finished: false,
      error: undefined,
      cache: undefined,
    };
    const out = runPipeline(ctx, v);
    return out instanceof Promise ? out.then((r) => r ?? notUpgraded()) : out;
  };
}
