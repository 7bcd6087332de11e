/** WebSocket proxying (RFC 6455): the upstream handshake first, then the client's upgrade, then messages both ways with backpressure. */
import type { ServerWebSocket, WebSocketHandler } from "bun";
import type { UpstreamTls } from "../config/types.ts";
import { websocketsOpen } from "../observability/gateway-metrics.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { ProxyRoute, RequestContext } from "./context.ts";
import { hashKey } from "./hash-key.ts";
import { GatewayError } from "./errors.ts";
import { logging } from "./logging.ts";
import { prepareHeaders } from "./forward.ts";

type Message = string | Buffer;

/** WsData is the state of one proxied WebSocket, carried by the client socket so it outlives reloads. */
export type WsData = {
  readonly ctx: RequestContext;
  readonly ep: Endpoint;
  readonly upstream: WebSocket;
  downstream: ServerWebSocket<WsData> | undefined;
  queue: Message[];
  bytes: number;
  poll: Timer | undefined;
};

// Upstream sends beyond this many buffered bytes pause reading from the client until the upstream catches up.
const HIGH_WATER = 1 << 20;
const LOW_WATER = 1 << 18;
const HANDSHAKE_HEADERS = ["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"];

/** openSockets are the client sockets open now, closed with 1001 when a shutdown's grace period ends. */
export const openSockets = new Set<ServerWebSocket<WsData>>();

/** isWebSocketUpgrade says whether the request asks for a WebSocket (RFC 6455 §4.1): GET with Upgrade: websocket. */
export function isWebSocketUpgrade(ctx: RequestContext): boolean {
  const up = ctx.headers.get("upgrade");
  return up !== null && ctx.method === "GET" && up.toLowerCase() === "websocket";
}

// 1005 and 1006 may not be sent in a close frame (RFC 6455 §7.4.1); an upstream that vanished is reported as 1014 (bad gateway).
function relayCode(code: number): number | undefined {
  if (code === 1005) return undefined;
  if (code === 1006 || code < 1000 || code === 1015 || (code > 1014 && code < 3000) || code > 4999) return 1014;
  return code;
}

function connect(url: string, headers: Record<string, string>, protocols: string[], timeout: number, tls: UpstreamTls | undefined): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, (tls === undefined ? { headers, protocols } : { headers, protocols, tls }) as unknown as string[]);
    ws.binaryType = "nodebuffer";
    const timer = setTimeout(() => {
      ws.close();
      reject(new GatewayError(504, "upstream did not accept the WebSocket in time", "upstream"));
    }, timeout);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(ws);
    };
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new GatewayError(502, "upstream refused the WebSocket handshake", "upstream", url));
    };
  });
}

/** proxyWebSocket opens the upstream WebSocket, then upgrades the client with the subprotocol the upstream chose; returns undefined once upgraded. */
export async function proxyWebSocket(ctx: RequestContext, t: ProxyRoute): Promise<Response | undefined> {
  const target = t.pool.select(performance.now(), undefined, t.options.loadBalance === "hash" ? hashKey(ctx, t.options.hashOn) : undefined);
  if (target === undefined) throw new GatewayError(503, "no healthy upstream endpoint", "upstream");
  const ep = target.endpoint;
  // A copy: the client's own headers must stay intact for server.upgrade() below.
  const h = prepareHeaders(ctx, ctx.headers.clone(), t.options.preserveHost);
  // As forward does: a discovered name is sent as the Host (the URL has its address), and its TLS setup verifies it.
  if (!t.options.preserveHost && target.hostHeader !== undefined) h.set("host", target.hostHeader);
  const protocols = (h.get("sec-websocket-protocol") ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  for (const name of HANDSHAKE_HEADERS) h.delete(name);
  const headers: Record<string, string> = {};
  h.forEach((v, k) => {
    headers[k] = v;
  });
  const path = t.stripPrefix === undefined ? ctx.path : ctx.path.slice(t.stripPrefix.length) || "/";
  const url = ep.url.replace(/^http/, "ws") + path + ctx.query;
  ctx.upstream = ep.url;
  const t0 = performance.now();
  let upstream: WebSocket;
  ep.inflight++;
  try {
    upstream = await connect(url, headers, protocols, t.options.responseHeaderTimeout, target.tls);
  } catch (e) {
    ep.inflight--;
    ep.count((e as GatewayError).status === 504 ? "timeout" : "error");
    throw e;
  }
  ctx.upstreamMs = performance.now() - t0;
  ep.count("response");
  const data: WsData = { ctx, ep, upstream, downstream: undefined, queue: [], bytes: 0, poll: undefined };
  upstream.onmessage = (ev: MessageEvent<Message>) => {
    const ws = data.downstream;
    if (ws === undefined) data.queue.push(ev.data);
    else if (ws.send(ev.data) === -1) upstream.pause(); // resumed in drain()
  };
  upstream.onclose = (ev: CloseEvent) => {
    data.downstream?.close(relayCode(ev.code), ev.reason);
  };
  const extra: Record<string, string> = { "x-request-id": ctx.id };
  if (upstream.protocol) extra["sec-websocket-protocol"] = upstream.protocol;
  if (!ctx.downstream.upgrade(ctx, data, extra)) {
    ep.inflight--;
    upstream.close();
    throw new GatewayError(400, "WebSocket upgrade failed", "downstream");
  }
  ep.websockets++; // an open WebSocket weighs in least_requests but is not a request in flight for max_inflight
  return undefined;
}

function watchUpstream(d: WsData, ws: ServerWebSocket<WsData>): void {
  if (d.poll !== undefined) return;
  ws.pause();
  // The WebSocket client has no drain event: look at its buffer until it has room again.
  d.poll = setInterval(() => {
    if (d.upstream.bufferedAmount <= LOW_WATER || d.upstream.readyState !== WebSocket.OPEN) {
      clearInterval(d.poll);
      d.poll = undefined;
      ws.resume();
    }
  }, 5);
}

/** websocketHandlers are the listener-wide handlers for proxied WebSockets; all state is in ws.data. */
export const websocketHandlers: WebSocketHandler<WsData> = {
  open(ws) {
    const d = ws.data;
    d.downstream = ws;
    openSockets.add(ws);
    websocketsOpen.labels().value++;
    for (const m of d.queue) if (ws.send(m) === -1) d.upstream.pause();
    d.queue = [];
    if (d.upstream.readyState !== WebSocket.OPEN) ws.close(1014, "upstream closed");
  },
  message(ws, message) {
    const d = ws.data;
    d.bytes += message.length;
    d.upstream.send(message);
    if (d.upstream.bufferedAmount > HIGH_WATER) watchUpstream(d, ws);
  },
  drain(ws) {
    ws.data.upstream.resume();
  },
  close(ws, code, reason) {
    const d = ws.data;
    openSockets.delete(ws);
    websocketsOpen.labels().value--;
    if (d.poll !== undefined) clearInterval(d.poll);
    d.ep.inflight--;
    d.ep.websockets--;
    if (d.upstream.readyState === WebSocket.OPEN || d.upstream.readyState === WebSocket.CONNECTING) d.upstream.close(relayCode(code), reason);
    d.ctx.bytesIn = d.bytes;
    d.ctx.status = 101;
    logging(d.ctx); // the exchange ends with the socket: its logging phase runs here
  },
};
