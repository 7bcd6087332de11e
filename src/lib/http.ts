/** HTTP semantics shared by the proxy and the upstream client (RFC 9110). */

/** HOP_BY_HOP are the fields a proxy does not pass on (RFC 9110 §7.6.1), plus Proxy-Connection and Keep-Alive that old clients still send. */
export const HOP_BY_HOP: readonly string[] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/** IDEMPOTENT are the methods a request may be repeated with (RFC 9110 §9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
