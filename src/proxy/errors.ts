/** The gateway's own error responses: one error type that knows its status, and one place that turns it into a response. */
import { Fields } from "../lib/fields.ts";
import { Reply } from "../lib/reply.ts";
import { log } from "../observability/log.ts";
import type { RequestContext } from "./context.ts";

/** ErrorSource says whose fault an error is: the client's, an upstream's, or ours. */
export type ErrorSource = "downstream" | "upstream" | "internal";

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  421: "Misdirected Request",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** GatewayError is any failure the gateway answers itself; `status` is what the client gets, `detail` is for the log only. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly source: ErrorSource,
    readonly detail?: string,
  ) {
    super(message);
    this.name = "GatewayError";
  }
}

/** errorResponse is the small plain-text body every gateway-made error carries, with the request id so a user's report can be found in the log. */
export function errorResponse(status: number, message: string, requestId: string, extra?: Record<string, string>): Reply {
  const reason = REASONS[status] ?? "Error";
  const headers = Fields.from(extra);
  headers.set("content-type", "text/plain; charset=utf-8");
  headers.set("cache-control", "no-store");
  headers.set("x-request-id", requestId);
  const body = Buffer.from(`${status} ${reason}: ${message}\nrequest id: ${requestId}\n`);
  // Its length said up front, so that every front end can send it with Content-Length rather than chunked.
  headers.set("content-length", String(body.byteLength));
  const reply = new Reply(status, headers, body);
  reply.own = true;
  return reply;
}

/** reasonOf is the reason phrase of a status the gateway answers itself ("Error" for others). */
export function reasonOf(status: number): string {
  return REASONS[status] ?? "Error";
}

/**
 * failWith turns any error into the response the client gets and notes it for the logging phase: a GatewayError's status and message (with `extra` fields, such
 * as a 405's Allow), anything else a logged 500.
 */
export function failWith(ctx: RequestContext, err: unknown, extra?: Record<string, string>): Reply {
  ctx.bytesOut = 0;
  if (err instanceof GatewayError) {
    ctx.error = err.detail ?? err.message;
    // 499 is for the log: the client has gone and will read nothing.
    if (err.status === 499) return new Reply(499, new Fields());
    return errorResponse(err.status, err.message, ctx.id, extra);
  }
  log.error("request failed", { request_id: ctx.id, route: ctx.route?.name, error: String((err as Error)?.stack ?? err) });
  ctx.error = String(err);
  return errorResponse(500, "internal error", ctx.id);
}
