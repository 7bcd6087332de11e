/** Upgrades through a front end that owns its connections (RFC 9110 §7.8): the upstream's 101 turns the client connection into a byte pipe; any other answer is passed on. */
import { Reply } from "../lib/reply.ts";
import { websocketsOpen } from "../observability/gateway-metrics.ts";
import { openUpgrade } from "../upstream/h1-upgrade.ts";
import type { ProxyRoute, RequestContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { hashKey } from "./hash-key.ts";
import { logging } from "./logging.ts";
import { requestHead } from "./request-head.ts";

/** upgradeOf is the protocol a request asks to switch to (its Upgrade field, which its Connection field names), or undefined; never h2c (RFC 9113 §3.1). */
export function upgradeOf(ctx: RequestContext): string | undefined {
  const up = ctx.headers.get("upgrade");
  if (up === null) return undefined;
  const conn = ctx.headers.get("connection");
  if (
    conn === null ||
    !conn
      .toLowerCase()
      .split(",")
      .some((t) => t.trim() === "upgrade")
  )
    return undefined;
  // A request with a body is no upgrade we can pipe: the body would run into the new protocol.
  if (ctx.headers.has("content-length") || ctx.headers.has("transfer-encoding")) return undefined;
  return up.trim().toLowerCase().startsWith("h2c") ? undefined : up;
}

/**
 * proxyUpgrade sends the upgrade request to an endpoint of the route; after its 101 the client's connection becomes a byte pipe to it (undefined is returned:
 * the connection is taken), any other answer is returned as the response. The exchange is logged when the pipe closes, with status 101.
 */
export async function proxyUpgrade(ctx: RequestContext, t: ProxyRoute, protocol: string): Promise<Reply | undefined> {
  const pipe = ctx.downstream.pipe!;
  const target = t.pool.select(performance.now(), undefined, t.options.loadBalance === "hash" ? hashKey(ctx, t.options.hashOn) : undefined);
  if (target === undefined) throw new GatewayError(503, "no healthy upstream endpoint", "upstream");
  const ep = target.endpoint;
  const path = (t.stripPrefix === undefined ? ctx.path : ctx.path.slice(t.stripPrefix.length) || "/") + ctx.query;
  const authority = ep.url.slice(ep.url.indexOf("//") + 2);
  const host = t.options.preserveHost && ctx.host !== "" ? ctx.host : (target.hostHeader ?? authority);
  const head = `${requestHead(ctx, ctx.method, path, host).slice(0, -2)}upgrade: ${protocol}\r\nconnection: upgrade\r\n\r\n`;
  ctx.upstream = ep.url;
  const t0 = performance.now();
  ep.inflight++;
  let reply: Awaited<ReturnType<typeof openUpgrade>>;
  try {
    reply = await openUpgrade(ep.url, target.tls, head, t.options.responseHeaderTimeout, ctx.downstream.signal(ctx));
  } catch (e) {
    ep.inflight--;
    const code = (e as { code?: string }).code;
    ctx.upstreamMs = performance.now() - t0;
    if (code === "ETIMEDOUT") {
      ep.count("timeout");
      throw new GatewayError(504, "upstream did not answer the upgrade in time", "upstream", ep.url);
    }
    ep.count(code === "ECONNREFUSED" ? "refused" : "error");
    throw new GatewayError(502, "upstream failed the upgrade", "upstream", `${ep.url}: ${code ?? (e as Error).message}`);
  }
  ctx.upstreamMs = performance.now() - t0;
  ep.count("response");
  if (reply.kind === "answered") {
    ep.inflight--;
    ctx.bytesOut = reply.body.byteLength;
    return new Reply(reply.status, reply.headers, reply.body.byteLength === 0 ? null : reply.body, reply.statusText);
  }
  // The 101 goes to the client as the upstream sent it (its Upgrade, Connection and Sec-WebSocket-* fields), with the request id.
  let out = `HTTP/1.1 101 ${reply.statusText || "Switching Protocols"}\r\n`;
  for (const [name, value] of reply.headers) if (name !== "x-request-id") out += `${name}: ${value}\r\n`;
  out += `x-request-id: ${ctx.id}\r\n\r\n`;
  ep.websockets++; // an open pipe weighs in least_requests but is not a request in flight for max_inflight
  websocketsOpen.labels().value++;
  pipe(ctx, out, reply.rest, reply.tunnel, (bytesIn, bytesOut) => {
    ep.inflight--;
    ep.websockets--;
    websocketsOpen.labels().value--;
    ctx.status = 101;
    ctx.bytesIn = bytesIn;
    ctx.bytesOut = bytesOut;
    logging(ctx);
  });
  return undefined;
}
