/** Forward auth ([forward_auth], nginx's auth_request, Traefik's ForwardAuth): the auth service judges each request from its fields before it is forwarded. */
import type { Cell } from "../../observability/metrics.ts";
import type { ForwardAuth } from "../../config/policy-types.ts";
import { Fields } from "../../lib/fields.ts";
import { HOP_BY_HOP } from "../../lib/http.ts";
import { Reply } from "../../lib/reply.ts";
import { log } from "../../observability/log.ts";
import type { RequestContext, RequestFilter } from "../context.ts";
import { failWith, GatewayError } from "../errors.ts";
import { trustedClient } from "./client-address.ts";

/**
 * NOT_SENT are the request fields the auth service does not get: the hop's own, the body's framing (it gets no body), Host (X-Forwarded-Host says it), and
 * every field through which a client could name another request than its own: auth services read X-Original-URL (Authelia's legacy endpoint, nginx's
 * auth_request idiom), X-Real-IP and Forwarded before or beside X-Forwarded-*. The ones that matter are set from the request itself.
 */
const NOT_SENT = new Set([
  ...HOP_BY_HOP,
  "host",
  "content-length",
  "expect",
  "forwarded",
  "x-original-url",
  "x-original-uri",
  "x-original-method",
  "x-real-ip",
  "x-rewrite-url",
]);
/** NOT_RETURNED are the auth answer's fields a client does not get from us: the hop's own and the framing we redo. */
const NOT_RETURNED = new Set([...HOP_BY_HOP, "content-length"]);
/** MAX_ANSWER bounds the body of a refusal passed back to the client (a login page, a JSON error); larger is a 502, read no further. */
const MAX_ANSWER = 1024 * 1024;

/** readCapped reads a body of at most `max` bytes; a longer one (declared or found while reading) throws a 502 at the first byte past it. */
async function readCapped(res: Response, max: number): Promise<Uint8Array> {
  const tooLarge = () => new GatewayError(502, "the auth service's answer is too large", "upstream", `forward auth: answer over ${max} bytes`);
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > max || res.body === null) {
    void res.body?.cancel().catch(() => undefined);
    if (declared > max) throw tooLarge();
    return new Uint8Array(0);
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      void reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    parts.push(value);
  }
  return Buffer.concat(parts);
}

/** authRequest is the auth service's request: the client's own fields (Cookie and Authorization included) and X-Forwarded-Method, -Proto, -Host, -Uri, -For. */
function authRequest(ctx: RequestContext): Headers {
  const h = new Headers();
  ctx.headers.forEach((value, name) => {
    if (!NOT_SENT.has(name) && !name.startsWith("x-forwarded-")) h.append(name, value);
  });
  h.set("x-forwarded-method", ctx.method);
  h.set("x-forwarded-proto", ctx.scheme);
  h.set("x-forwarded-host", ctx.host);
  h.set("x-forwarded-uri", ctx.path + ctx.query);
  const client = trustedClient(ctx);
  h.set("x-forwarded-for", client);
  h.set("x-real-ip", client);
  h.set("x-original-method", ctx.method);
  h.set("x-original-url", `${ctx.scheme}://${ctx.host}${ctx.path}${ctx.query}`);
  h.set("x-request-id", ctx.id);
  return h;
}

/** passBack is the auth service's refusal as the client gets it: its status, fields (Location, Set-Cookie, WWW-Authenticate) and body. */
async function passBack(ctx: RequestContext, res: Response): Promise<Reply> {
  const body = await readCapped(res, MAX_ANSWER);
  const headers = new Fields();
  res.headers.forEach((value, name) => {
    if (!NOT_RETURNED.has(name) && name !== "set-cookie") headers.append(name, value);
  });
  // Each cookie its own field: they cannot be joined with commas (RFC 6265 §3).
  for (const c of res.headers.getSetCookie()) headers.append("set-cookie", c);
  headers.set("content-length", String(body.byteLength));
  headers.set("x-request-id", ctx.id);
  ctx.bytesOut = body.byteLength;
  return new Reply(res.status, headers, body);
}

/**
 * forwardAuthFilter asks the auth service about each request (GET, no body). A 2xx lets it through, with the named fields of the answer copied onto it (the
 * client's own fields of those names removed first, so they cannot be forged); anything else goes back to the client as the service sent it. A timeout is 504,
 * an unreachable or broken service 503: the route fails closed, and says so in the log.
 */
export function forwardAuthFilter(cfg: ForwardAuth, denied: Cell): RequestFilter {
  return async (ctx) => {
    let res: Response;
    try {
      res = await fetch(cfg.url, {
        method: "GET",
        headers: authRequest(ctx),
        redirect: "manual",
        decompress: false,
        signal: AbortSignal.timeout(cfg.timeout),
      } as RequestInit);
    } catch (e) {
      const timedOut = (e as Error).name === "TimeoutError";
      log.warn("forward auth failed", {
        request_id: ctx.id,
        route: ctx.route?.name,
        url: cfg.url,
        error: timedOut ? "timeout" : String((e as Error).message ?? e),
      });
      denied.value++;
      return failWith(
        ctx,
        timedOut
          ? new GatewayError(504, "the auth service did not answer in time", "upstream", `forward auth: timeout after ${cfg.timeout} ms`)
          : new GatewayError(503, "the auth service is unreachable", "upstream", `forward auth: ${String((e as Error).message ?? e)}`),
      );
    }
    if (res.status >= 200 && res.status < 300) {
      for (const name of cfg.copyHeaders) {
        ctx.headers.delete(name);
        const v = res.headers.get(name);
        if (v !== null) ctx.headers.set(name, v);
      }
      // "" when the service names no user: the request is still an authenticated one (the cache keeps its answer to itself, RFC 9111 §3.5).
      ctx.user ??= res.headers.get("remote-user") ?? "";
      void res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    denied.value++;
    ctx.error = `forward auth: ${res.status}`;
    return passBack(ctx, res).catch((e) =>
      failWith(
        ctx,
        e instanceof GatewayError
          ? e
          : (e as Error).name === "TimeoutError"
            ? new GatewayError(504, "the auth service did not answer in time", "upstream", `forward auth: timeout after ${cfg.timeout} ms in its body`)
            : new GatewayError(503, "the auth service's answer broke off", "upstream", `forward auth: ${String(e)}`),
      ),
    );
  };
}
