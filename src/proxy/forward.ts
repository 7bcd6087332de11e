/** Forwarding one request to an upstream endpoint (RFC 9110 §7.6, RFC 9112): headers, timeouts, failover on refused connections, streaming both ways. */
import { Cancel, toAbortSignal } from "../lib/cancel.ts";
import { Fields, type FieldEditor } from "../lib/fields.ts";
import { Reply } from "../lib/reply.ts";
import { retries } from "../observability/gateway-metrics.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { limitBody, trackBody, type LimitedBody } from "./body.ts";
import { bufferBody, type Buffered } from "./body-buffer.ts";
import { clientOf, type ProxyRoute, type RequestContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { appendVia, setForwarded, stripHopByHop } from "./headers.ts";
import { bodyEnded } from "./logging.ts";
import { hashKey } from "./hash-key.ts";
import { requestHead } from "./request-head.ts";
import { IDEMPOTENT } from "../lib/http.ts";
import { BUFFER_LIMIT, type H1Response } from "../upstream/h1-client.ts";
import { unwatch, watch, type Watched } from "../lib/idle-watch.ts";

const TIMEOUT = "response header timeout";
const CLIENT_GONE = "client closed the connection";
const IDLE = "upstream idle";

function abortForTimeout(ctrl: Cancel): void {
  ctrl.abort(TIMEOUT);
}

/** upstreamPath maps the client's path to the upstream's: the prefix removed when the route strips it. */
function upstreamPath(ctx: RequestContext, strip: string | undefined): string {
  if (strip === undefined) return ctx.path + ctx.query;
  const rest = ctx.path.slice(strip.length);
  return (rest.startsWith("/") ? rest : `/${rest}`) + ctx.query;
}

/** prepareHeaders turns the client's fields into the upstream's, in place: h is the request's own Fields (ours alone) or a copy. */
export function prepareHeaders<H extends FieldEditor>(ctx: RequestContext, h: H, preserveHost: boolean): H {
  stripHopByHop(h);
  appendVia(h, ctx.hop.via);
  const client = clientOf(ctx);
  setForwarded(h, { client, proto: ctx.scheme, host: ctx.host }, ctx.hop.trusted(client));
  h.set("x-request-id", ctx.id);
  // 100-continue is between the client and us (Bun's server answers it); the upstream gets the body outright.
  h.delete("expect");
  if (!preserveHost) h.delete("host");
  return h;
}

/**
 * forward sends the request to a target of the route's pool and streams the answer back. A refused connection ejects the endpoint for its cool-down and,
 * since nothing was sent, the next endpoint is tried. Throws GatewayError for 413, 502, 503, 504 and client aborts.
 */
export async function forward(ctx: RequestContext, t: ProxyRoute): Promise<Reply> {
  const route = ctx.route!;
  const method = ctx.method;
  const o = t.options;
  let limited: LimitedBody | undefined;
  const declared = ctx.headers.get("content-length");
  if (declared !== null) {
    ctx.bytesIn = Number(declared);
    if (ctx.bytesIn > route.maxBodySize) throw new GatewayError(413, `request body over the ${route.maxBodySize}-byte limit`, "downstream");
  }
  const incoming = ctx.downstream.body(ctx);
  if (incoming !== null) limited = limitBody(incoming, route.maxBodySize);
  // The body is read (up to request_buffer) before an endpoint is chosen: a client that trickles it holds no upstream slot meanwhile.
  const buffered = limited === undefined ? undefined : await readBody(ctx, limited, declared === null, t.requestBuffer);
  // A body read whole can be sent again (to another endpoint); one that streams only until its first byte went out.
  const unsent = () => buffered === undefined || buffered.kind === "whole" || !buffered.started();
  if (t.requestIdleSeconds !== undefined) ctx.downstream.keepWaiting(ctx, t.requestIdleSeconds);

  // RFC 9112 §9.6: a client that sends "close" is told so in the response (Bun closes without saying it).
  const close = ctx.headers.get("connection")?.toLowerCase().includes("close") === true;
  const key = o.loadBalance === "hash" ? hashKey(ctx, o.hashOn) : undefined;
  // Fields for fetch (https:// endpoints) are made on first use; plain-HTTP endpoints get a serialized head instead.
  let headers: Fields | undefined;
  const path = upstreamPath(ctx, t.stripPrefix);
  const ctrl = new Cancel();
  const gone = ctx.downstream.signal(ctx);
  // The client may have left while its body was read: a signal that aborted already fires no listener.
  if (gone.aborted) ctrl.abort(CLIENT_GONE);
  else gone.addEventListener("abort", () => ctrl.abort(CLIENT_GONE), { once: true });
  // The response header timeout is watched by the shared sweep (to within a quarter second): a timer per request costs more than the watch.
  const headerWait: Watched = { last: performance.now(), limit: o.responseHeaderTimeout, expire: () => ctrl.abort(TIMEOUT) };
  watch(headerWait);
  const tried: Endpoint[] = [];
  let lastProblem = "";
  try {
    for (;;) {
      const picked = t.pool.select(performance.now(), tried, key);
      if (picked === undefined) {
        if (tried.length === 0) {
          if (t.pool.saturated(performance.now()))
            throw new GatewayError(503, "upstream at capacity", "upstream", `every endpoint has ${o.maxInflight} requests in flight (max_inflight)`);
          throw new GatewayError(503, "no healthy upstream endpoint", "upstream");
        }
        throw new GatewayError(502, "upstream unreachable", "upstream", lastProblem);
      }
      const ep = picked.endpoint;
      // Counted where the next attempt really starts, whatever failed before it (a refusal, an error, try_timeout).
      if (tried.length > 0) retries.labels(route.name).value++;
      ep.inflight++;
      const t0 = performance.now();
      // A per-try deadline (try_timeout) lets an idempotent request leave an endpoint that does not answer for the next one.
      let tryCtrl: Cancel | undefined;
      let tryTimer: Timer | undefined;
      // Only when a retry could follow: otherwise a slow answer is still an answer, within response_header_timeout.
      if (o.tryTimeout > 0 && IDEMPOTENT.has(method) && unsent() && t.pool.targets.length > tried.length + 1 && t.pool.hasRetryBudget()) {
        tryCtrl = new Cancel();
        tryTimer = setTimeout(abortForTimeout, o.tryTimeout, tryCtrl);
      }
      let res: H1Response;
      try {
        const signal = tryCtrl ? new Cancel().follow(ctrl).follow(tryCtrl) : ctrl;
        if (ep.h1 !== undefined) {
          const body = bodyOf(buffered);
          const chunked = body instanceof ReadableStream && declared === null;
          // A chunked body read whole goes on with its length.
          const framing = chunked ? "chunked" : body instanceof Uint8Array && declared === null ? body.byteLength : undefined;
          const host = o.preserveHost && ctx.host !== "" ? ctx.host : (picked.hostHeader ?? ep.h1.authority);
          res = await ep.h1.request({ method: method, head: requestHead(ctx, method, path, host, framing), body, chunked, signal });
        } else {
          if (headers === undefined) headers = prepareHeaders(ctx, ctx.headers, o.preserveHost);
          if (!o.preserveHost) {
            if (picked.hostHeader !== undefined) headers.set("host", picked.hostHeader);
            else headers.delete("host");
          }
          res = fromFetch(
            await fetch(ep.url + path, {
              method: method,
              headers: headers.toHeaders(),
              body: bodyOf(buffered),
              redirect: "manual",
              decompress: false,
              signal: toAbortSignal(signal),
              timeout: o.idleTimeout,
              tls: picked.tls,
            }),
          );
        }
        clearTimeout(tryTimer);
      } catch (err) {
        clearTimeout(tryTimer);
        ep.inflight--;
        ctx.upstream = ep.url;
        ctx.upstreamMs = performance.now() - t0;
        const code = (err as { code?: string }).code ?? (err as Error).name;
        // The client broke its own body (too large, malformed, stalled): the upstream is not to blame (its connection is closed, not reused).
        const fault = limited === undefined ? undefined : clientsFault(limited, route.maxBodySize);
        if (fault !== undefined) {
          if (fault.status !== 413) ep.count("aborted");
          throw fault;
        }
        if (tryCtrl?.aborted && !ctrl.aborted) {
          ep.count("timeout");
          ep.markFailed(performance.now(), o.maxFails, o.failCooldown, o.failCooldownMax, `no response headers within try_timeout ${o.tryTimeout}ms`);
          lastProblem = `${ep.url}: no response headers within ${o.tryTimeout}ms`;
          tried.push(ep);
          if (IDEMPOTENT.has(method) && unsent() && t.pool.allowRetry()) continue;
          throw new GatewayError(504, "upstream did not answer in time", "upstream", lastProblem);
        }
        if (ctrl.aborted) {
          if (ctrl.reason === TIMEOUT) {
            ep.count("timeout");
            ep.markFailed(performance.now(), o.maxFails, o.failCooldown, o.failCooldownMax, `no response headers within ${o.responseHeaderTimeout}ms`);
            throw new GatewayError(504, "upstream did not answer in time", "upstream", `no response headers within ${o.responseHeaderTimeout}ms`);
          }
          ep.count("aborted");
          throw new GatewayError(499, CLIENT_GONE, "downstream");
        }
        if (code === "ECONNREFUSED") {
          ep.count("refused");
          ep.markDown(performance.now(), o.failCooldown, o.failCooldownMax, "connection refused");
          lastProblem = `${ep.url}: connection refused`;
          tried.push(ep);
          // Nothing reached the endpoint, so even a POST may go to the next one, if its body can be sent again (read whole, or not read yet).
          if (unsent()) continue;
          throw new GatewayError(502, "upstream unreachable", "upstream", lastProblem);
        }
        ep.count(code === "ETIMEDOUT" || code === "TimeoutError" ? "timeout" : "error");
        ep.markFailed(performance.now(), o.maxFails, o.failCooldown, o.failCooldownMax, code);
        lastProblem = `${ep.url}: ${code}`;
        tried.push(ep);
        // No response came back: an idempotent request (RFC 9110 §9.2.2) whose body was not sent may go to another endpoint, within the pool's retry budget.
        if (IDEMPOTENT.has(method) && unsent() && t.pool.allowRetry()) continue;
        throw new GatewayError(
          code === "ETIMEDOUT" || code === "TimeoutError" ? 504 : 502,
          "upstream failed",
          "upstream",
          `${ep.url}: ${code}: ${(err as Error).message}`,
        );
      }
      unwatch(headerWait);
      ctx.upstream = ep.url;
      ctx.upstreamMs = performance.now() - t0;
      ep.latency.observe(ctx.upstreamMs / 1000);
      ep.markUp();
      ep.count("response");
      return respond(ctx, res, ep, ctrl, o.idleTimeout, close);
    }
  } finally {
    unwatch(headerWait);
    buffered?.release();
  }
}

/** bodyOf is what goes upstream of a buffered body: its bytes, its stream, or none. */
function bodyOf(b: Buffered | undefined): Uint8Array | ReadableStream<Uint8Array> | null {
  return b === undefined ? null : b.kind === "whole" ? b.bytes : b.stream;
}

/** readBody buffers the request body (bufferBody), its failures told as the client's: 413, 400 or 408, or 499 when the client left. */
async function readBody(ctx: RequestContext, limited: LimitedBody, chunked: boolean, limit: number): Promise<Buffered> {
  try {
    const b = await bufferBody(limited, limit);
    if (b.kind === "whole" && chunked) ctx.bytesIn = b.bytes.byteLength;
    return b;
  } catch (e) {
    throw clientsFault(limited, ctx.route!.maxBodySize) ?? new GatewayError(499, CLIENT_GONE, "downstream", String((e as Error).message ?? e));
  }
}

/** clientsFault is the client's own failure of its body, as the error it gets: 413 past max_body_size, 400 or 408 for a broken or stalled body. */
function clientsFault(limited: LimitedBody, maxBodySize: number): GatewayError | undefined {
  if (limited.state.tooLarge) return new GatewayError(413, `request body over the ${maxBodySize}-byte limit`, "downstream");
  const e = limited.state.clientError;
  return e === undefined ? undefined : new GatewayError(e.status, e.message, "downstream");
}

/** fromFetch gives fetch's answer the client's shape: hop-by-hop fields removed, the body's form decided by its declared length. */
function fromFetch(res: Response): H1Response {
  const h = Fields.from(res.headers);
  stripHopByHop(h);
  const declared = h.get("content-length");
  const kind = res.body === null ? "none" : declared !== null && Number(declared) <= BUFFER_LIMIT ? "bytes" : "stream";
  return {
    status: res.status,
    statusText: res.statusText,
    headers: h,
    kind,
    stream: kind === "stream" ? res.body! : undefined,
    bytes: () => res.bytes(),
    ready: () => undefined,
  };
}

/**
 * respond passes the upstream's status, headers and body on (small bodies of known length read whole first, ctx.bytesOut set; others stream chunk by chunk as
 * ctx.streamed, whose end reaches the logging phase through bodyEnded).
 */
async function respond(ctx: RequestContext, res: H1Response, ep: Endpoint, ctrl: Cancel, idleTimeout: number, close: boolean): Promise<Reply> {
  const h = res.headers;
  if (close) h.set("connection", "close");
  appendVia(h, ctx.hop.via);
  h.set("x-request-id", ctx.id);
  const status = res.status;
  if (res.kind === "none") {
    ep.inflight--;
    ctx.bytesOut = 0;
    return new Reply(status, h, null, res.statusText);
  }
  if (res.kind === "bytes") {
    // A small body usually arrives with the head: answered at once, no timer or promise.
    const ready = res.ready();
    if (ready !== undefined) {
      ep.inflight--;
      ctx.bytesOut = ready.byteLength;
      return new Reply(status, h, ready, res.statusText);
    }
  }
  // The body may rest at most idleTimeout between chunks (a buffered body: in all).
  const idle: Watched = { last: performance.now(), limit: idleTimeout, expire: () => ctrl.abort(IDLE) };
  watch(idle);
  if (res.kind === "bytes") {
    let bytes: Uint8Array;
    try {
      bytes = await res.bytes();
    } catch (err) {
      unwatch(idle);
      ep.inflight--;
      if (ctrl.reason === CLIENT_GONE) throw new GatewayError(499, CLIENT_GONE, "downstream");
      const code = ctrl.reason === IDLE ? `idle for more than ${idleTimeout}ms` : ((err as { code?: string }).code ?? (err as Error).name);
      ep.lastError = code;
      ep.count("error");
      throw new GatewayError(502, "upstream response broke off", "upstream", `${ep.url}: upstream body failed: ${code}`);
    }
    unwatch(idle);
    ep.inflight--;
    ctx.bytesOut = bytes.byteLength;
    return new Reply(status, h, bytes, res.statusText);
  }
  const body = trackBody(
    res.stream!,
    (bytes, problem) => {
      unwatch(idle);
      ep.inflight--;
      if (ctrl.reason === IDLE) problem = `upstream body failed: idle for more than ${idleTimeout}ms`;
      if (problem?.startsWith("upstream")) ep.lastError = problem;
      bodyEnded(ctx, bytes, problem);
    },
    idle,
  );
  const reply = new Reply(status, h, body, res.statusText);
  ctx.streamed = reply;
  return reply;
}
