/** The logging phase: metrics and one access-log line per request, written once when the response has ended. */
import { log } from "../observability/log.ts";
import { clientOf, type RequestContext } from "./context.ts";
import { unroutedStats } from "./unrouted.ts";

/** release ends a hold: the phase passes the upstream's response on, so its outcome (now, or when its body ends) is what gets recorded. */
export function release(ctx: RequestContext): void {
  ctx.hold = false;
  const h = ctx.held;
  if (h !== undefined) {
    ctx.held = undefined;
    finish(ctx, h.status, h.bytesOut, h.problem);
  }
}

/** discard ends a hold without recording the upstream's outcome: the phase answers the client itself (from the cache) and finishes the request then. */
export function discard(ctx: RequestContext): void {
  ctx.hold = false;
  ctx.held = undefined;
}

/** finish records a finished request: status counter and duration histogram of its route, and the access-log line. Calling it twice is a no-op. While ctx.hold is set (a phase that may answer with something else than the upstream's response), the outcome is kept in ctx.held instead. */
export function finish(ctx: RequestContext, status: number, bytesOut: number, problem: string | undefined): void {
  if (ctx.finished) return;
  if (ctx.hold) {
    ctx.held = { status, bytesOut, problem };
    return;
  }
  ctx.finished = true;
  const ms = performance.now() - ctx.start;
  (ctx.route?.stats ?? unroutedStats()).record(status, ms / 1000);
  if (!log.access) return;
  log.push(JSON.stringify({
    time: new Date().toISOString(),
    level: "info",
    msg: "access",
    worker: log.worker,
    request_id: ctx.id,
    client: clientOf(ctx),
    host: ctx.host,
    route: ctx.route?.name ?? null,
    method: ctx.req.method,
    path: ctx.path,
    status,
    bytes_in: ctx.bytesIn,
    bytes_out: bytesOut,
    duration_ms: Math.round(ms * 1000) / 1000,
    upstream: ctx.upstream ?? null,
    upstream_ms: ctx.upstream === undefined ? null : Math.round(ctx.upstreamMs * 1000) / 1000,
    cache: ctx.cache,
    error: problem ?? ctx.error ?? undefined,
  }) + "\n");
}
