/** Host header values: the host name a request names, normalized for lookups and cache keys. */

/** normalizeHostHeader strips the port, lowercases and drops a trailing dot; undefined when the value is not a valid host[:port]. */
export function normalizeHostHeader(raw: string): string | undefined {
  let host: string;
  let rest: string;
  if (raw.charCodeAt(0) === 91 /* [ */) {
    const end = raw.indexOf("]");
    if (end < 0) return undefined;
    host = raw.slice(0, end + 1).toLowerCase();
    rest = raw.slice(end + 1);
    if (!/^\[[0-9a-f:.]+\]$/.test(host)) return undefined;
  } else {
    const colon = raw.indexOf(":");
    host = (colon < 0 ? raw : raw.slice(0, colon)).toLowerCase();
    rest = colon < 0 ? "" : raw.slice(colon);
    if (!/^[a-z0-9_.-]+$/.test(host) || host.startsWith(".") || host.includes("..")) return undefined;
    if (host.endsWith(".")) host = host.slice(0, -1);
  }
  if (rest !== "" && !/^:\d{1,5}$/.test(rest)) return undefined;
  return host;
}
