/** The [limits] table of config.toml and [listen] proxy_protocol: what the front end allows a client connection (head size and time, body gaps, connection caps). */
import { type Cidr, parseCidr } from "../lib/cidr.ts";
import type { Reader } from "./reader.ts";
import type { Limits } from "./types.ts";

/** DEFAULT_LIMITS are the defaults of CONTRACT.md; a config without [limits] gets them. */
export const DEFAULT_LIMITS: Limits = {
  maxHeaderSize: 16 * 1024,
  maxHeaderFields: 100,
  headerTimeout: 10_000,
  bodyTimeout: 30_000,
  requestBuffer: 1024 * 1024,
  maxConnections: 20_000,
  maxConnectionsPerClient: 256,
};

/** readLimits reads [limits] (undefined: the table is absent); every key has a default and a range. */
export function readLimits(r: Reader | undefined): Limits {
  if (r === undefined) return DEFAULT_LIMITS;
  const d = DEFAULT_LIMITS;
  const limits: Limits = {
    maxHeaderSize: r.size("max_header_size", d.maxHeaderSize),
    maxHeaderFields: r.integer("max_header_fields", d.maxHeaderFields, 1, 10_000),
    headerTimeout: r.duration("header_timeout", d.headerTimeout),
    bodyTimeout: r.duration("body_timeout", d.bodyTimeout),
    requestBuffer: r.size("request_buffer", d.requestBuffer),
    maxConnections: r.integer("max_connections", d.maxConnections, 1, 10_000_000),
    maxConnectionsPerClient: r.integer("max_connections_per_client", d.maxConnectionsPerClient, 1, 10_000_000),
  };
  if (limits.maxHeaderSize < 1024 || limits.maxHeaderSize > 1024 * 1024)
    r.problem("max_header_size", "is out of range", 'a size from "1KiB" to "1MiB" (nginx and most clients stay within 16KiB)');
  if (limits.headerTimeout < 100) r.problem("header_timeout", "is shorter than 100ms", 'a duration such as "10s"');
  if (limits.bodyTimeout < 100) r.problem("body_timeout", "is shorter than 100ms", 'a duration such as "30s"');
  if (limits.requestBuffer > 64 * 1024 * 1024)
    r.problem("request_buffer", "is over 64MiB", 'a size such as "1MiB" (each request in flight may hold this much)');
  if (limits.maxConnectionsPerClient > limits.maxConnections)
    r.problem("max_connections_per_client", "is larger than max_connections", "a per-client cap no larger than the total");
  r.done();
  return limits;
}

/** readProxyProtocol reads [listen] proxy_protocol: the sources allowed to open a connection with a PROXY v1/v2 preamble. */
export function readProxyProtocol(r: Reader | undefined): readonly Cidr[] {
  const out: Cidr[] = [];
  (r?.stringList("proxy_protocol") ?? []).forEach((s, i) => {
    const c = parseCidr(s);
    if (c) out.push(c);
    else r!.problem(`proxy_protocol[${i}]`, `cannot read ${JSON.stringify(s)} as an address or range`, 'an IP address or CIDR range such as "10.0.0.0/8"');
  });
  return out;
}
