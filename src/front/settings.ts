/** The front end's settings made from a config: [limits], [listen] idle_timeout and proxy_protocol, and this process's share of the connection caps. */
import type { GlobalConfig } from "../config/types.ts";
import { cidrMatcher } from "../lib/cidr.ts";
import type { FrontSettings } from "./h1-types.ts";

/** MAX_REQUEST_LINE: a request line over 8 KiB gets 414 (CONTRACT.md), or over the whole head's limit when that is smaller. */
const MAX_REQUEST_LINE = 8 * 1024;

/** ListenerSettings are a config's front-end settings and the caps it sets; the listeners apply the caps to their one ConnectionLimits once the config is live. */
export type ListenerSettings = FrontSettings & { readonly maxConnections: number; readonly maxConnectionsPerClient: number };

/**
 * frontSettings turns a config into the front end's settings. With several worker processes each counts its own connections: the total cap is shared out
 * evenly (the kernel spreads connections evenly), the per-client cap applies in each worker as written.
 */
export function frontSettings(g: GlobalConfig): ListenerSettings {
  const l = g.limits;
  return {
    maxConnections: Math.ceil(l.maxConnections / Math.max(1, g.workers)),
    maxConnectionsPerClient: l.maxConnectionsPerClient,
    limits: { maxLineBytes: Math.min(MAX_REQUEST_LINE, l.maxHeaderSize), maxHeadBytes: l.maxHeaderSize, maxFields: l.maxHeaderFields },
    headerTimeoutMs: l.headerTimeout,
    idleTimeoutMs: g.listen.idleTimeout,
    bodyTimeoutMs: l.bodyTimeout,
    proxyProtocol: g.listen.proxyProtocol.length > 0 ? cidrMatcher(g.listen.proxyProtocol) : undefined,
  };
}
