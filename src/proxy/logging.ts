/** The logging phase: metrics and one access-log line per request, written once when the response has ended. */
import { type Answered, Reply } from "../lib/reply.ts";
import { log } from "../observability/log.ts";
import type { RequestContext } from "./context.ts";
import { trustedClient } from "./policy/client-address.ts";
import { unroutedStats } from "./unrouted.ts";

/**
 * delivered is the pipeline's last step for a response handed to the client: the logging phase runs now, or, when its body still streams from the upstream, at
 * the body's end (bodyEnded).
 */
export function delivered(ctx: RequestContext, res: Answered): void {
  ctx.status = res.status;
  // An answer in memory counts what it carries (the gateway's own errors, tokens), whichever phase made it.
  if (res instanceof Reply && res.body instanceof Uint8Array) ctx.bytesOut = ctx.method === "HEAD" ? 0 : res.body.byteLength;
  if (res === ctx.streamed) ctx.responded = true;
  else logging(ctx);
}

/**
 * bodyEnded reports the end of a streamed upstream body (bytes sent, and why it stopped early if it did); it runs the logging phase only when that body is what
 * the client got, not one a phase read or dropped itself (the cache).
 */
export function bodyEnded(ctx: RequestContext, bytes: number, problem: string | undefined): void {
  if (!ctx.responded) return;
  ctx.bytesOut = bytes;
  if (problem !== undefined) ctx.error = problem;
  logging(ctx);
}

/**
 * logging records a finished request: status counter and duration histogram of its route, and the access-log line, from ctx.status, ctx.bytesOut and ctx.error.
 * Calling it twice is a no-op.
 */
export function logging(ctx: RequestContext): void {
  if (ctx.finished) return;
  ctx.finished = true;
  const ms = performance.now() - ctx.start;
  const status = ctx.status;
  (ctx.route?.stats ?? unroutedStats()).record(status, ms / 1000);
  if (!log.access) return;
  const client = trustedClient(ctx);
  log.push(
    `${JSON.stringify({
      time: new Date().toISOString(),
      level: "info",
      msg: "access",
      worker: log.worker,
      request_id: ctx.id,
      client,
      // The connection's own peer, when it is a trusted proxy speaking for the client.
      peer: ctx.peer === client ? undefined : ctx.peer,
      user: ctx.user || undefined,
      host: ctx.host,
      route: ctx.route?.name ?? null,
      method: ctx.method,
      path: ctx.path,
      status,
      bytes_in: ctx.bytesIn,
      bytes_out: ctx.bytesOut,
      duration_ms: Math.round(ms * 1000) / 1000,
      upstream: ctx.upstream ?? null,
      upstream_ms: ctx.upstream === undefined ? null : Math.round(ctx.upstreamMs * 1000) / 1000,
      cache: ctx.cache,
      error: ctx.error ?? undefined,
    })}\n`,
  );
}
