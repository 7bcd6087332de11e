/** The pipeline behind Bun.serve's listeners: a context made from Bun's Request and Server, and the Downstream that reads them. */
import type { Server } from "bun";
import { Fields } from "../lib/fields.ts";
import { type Answered, toResponse } from "../lib/reply.ts";
import { type Downstream, type HandlerView, newContext, type RequestContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { refuseEarly, runPipeline } from "./pipeline.ts";
import { normalizePath } from "../lib/path.ts";

const req = (ctx: RequestContext) => ctx.source as Request;
const server = (ctx: RequestContext) => ctx.connection as Server<unknown>;

/** BUN_DOWNSTREAM reads a request's client side from Bun.serve's Request and Server; one object for every request. */
const BUN_DOWNSTREAM: Downstream = {
  peer: (ctx) => server(ctx).requestIP(req(ctx))?.address ?? "",
  // Bun.serve keeps the handshake's server name to itself.
  tlsName: () => undefined,
  signal: (ctx) => req(ctx).signal,
  body: (ctx) => req(ctx).body,
  keepWaiting: (ctx, seconds) => server(ctx).timeout(req(ctx), seconds),
  upgrade: (ctx, data, headers) => server(ctx).upgrade(req(ctx), { data, headers }),
};

/** createFetchHandler builds the Bun.serve fetch handler of a public listener; `view` returns the live generation's view, read once per request. */
export function createFetchHandler(view: () => HandlerView, scheme: "http" | "https") {
  return function handle(request: Request, bun: Server<unknown>): Response | Promise<Response | undefined> {
    const v = view();
    const url = request.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    const q = start < 0 ? -1 : url.indexOf("?", start);
    const headers = Fields.from(request.headers);
    const raw = start < 0 ? "/" : q < 0 ? url.slice(start) : url.slice(start, q);
    // The same normal form as the raw front end's (lib/path.ts): Bun's URL has resolved dot segments, not the rest.
    const path = normalizePath(raw);
    const ctx = newContext(
      request.method,
      headers,
      BUN_DOWNSTREAM,
      request,
      bun,
      scheme,
      headers.get("host") ?? "",
      path ?? raw,
      q < 0 ? "" : url.slice(q),
      v.hop,
    );
    if (path === null)
      return toResponse(refuseEarly(ctx, new GatewayError(400, "the path has an encoded slash, backslash or NUL, or a broken percent-encoding", "downstream")));
    // Bun.serve hands no body to a GET or HEAD: one that was announced is refused, not forwarded as a length with nothing behind it (the upstream would wait).
    if (request.body === null) {
      const length = headers.get("content-length");
      if ((length !== null && length !== "0") || headers.has("transfer-encoding"))
        return toResponse(refuseEarly(ctx, new GatewayError(400, `a body on ${request.method} is not taken on this listener (listen.http2)`, "downstream")));
      headers.delete("content-length");
    }
    const out = runPipeline(ctx, v);
    return out instanceof Promise ? out.then(asResponse) : toResponse(out);
  };
}

/** asResponse gives Bun.serve a Response for the pipeline's answer (undefined: a WebSocket took the connection). */
function asResponse(res: Answered | undefined): Response | undefined {
  return res === undefined ? undefined : toResponse(res);
}
