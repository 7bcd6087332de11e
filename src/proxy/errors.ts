/** The gateway's own error responses: one error type that knows its status, and one place that turns it into a response. */

/** ErrorSource says whose fault an error is: the client's, an upstream's, or ours. */
export type ErrorSource = "downstream" | "upstream" | "internal";

const REASONS: Record<number, string> = {
  400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large", 421: "Misdirected Request",
  431: "Request Header Fields Too Large", 499: "Client Closed Request", 500: "Internal Server Error", 502: "Bad Gateway",
  503: "Service Unavailable", 504: "Gateway Timeout",
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
export function errorResponse(status: number, message: string, requestId: string, extra?: ConstructorParameters<typeof Headers>[0]): Response {
  const reason = REASONS[status] ?? "Error";
  const headers = new Headers(extra);
  headers.set("content-type", "text/plain; charset=utf-8");
  headers.set("cache-control", "no-store");
  headers.set("x-request-id", requestId);
  return new Response(`${status} ${reason}: ${message}\nrequest id: ${requestId}\n`, { status, headers });
}
