/** Header rules for a forwarding proxy: hop-by-hop removal (RFC 9110 §7.6.1), Via (§7.6.3), X-Forwarded-* and Forwarded (RFC 7239). */
import type { FieldEditor } from "../lib/fields.ts";
import { HOP_BY_HOP } from "../lib/http.ts";

/** stripHopByHop removes the hop-by-hop fields and every field that Connection names; a handful of Map deletes, no allocation when Connection is absent. */
export function stripHopByHop(h: FieldEditor): void {
  const conn = h.get("connection");
  if (conn !== null) {
    for (const token of conn.split(",")) {
      const name = token.trim().toLowerCase();
      if (name && name !== "close" && name !== "keep-alive") h.delete(name);
    }
  }
  for (const name of HOP_BY_HOP) h.delete(name);
}

/** appendVia adds this hop to Via (RFC 9110 §7.6.3): received-protocol and a pseudonym, never the real host name. */
export function appendVia(h: FieldEditor, entry: string): void {
  const prior = h.get("via");
  h.set("via", prior === null ? entry : `${prior}, ${entry}`);
}

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function forwardedValue(v: string): string {
  return TOKEN_RE.test(v) ? v : `"${v.replace(/["\\]/g, "\\$&")}"`;
}

/** forwardedFor formats a client address as a Forwarded `for=` value: IPv6 in brackets and quoted (RFC 7239 §6). */
function forwardedFor(ip: string): string {
  return ip.includes(":") ? `"[${ip}]"` : ip;
}

/** ForwardedInfo is what the proxy knows about the hop it received the request on. */
export type ForwardedInfo = { readonly client: string; readonly proto: "http" | "https"; readonly host: string };

/** forwardedElement is this hop's Forwarded element (RFC 7239 §4). */
export function forwardedElement(info: ForwardedInfo): string {
  return `for=${forwardedFor(info.client)};host=${forwardedValue(info.host)};proto=${info.proto}`;
}

/**
 * setForwarded writes X-Forwarded-For/-Proto/-Host and Forwarded: a trusted client's values are kept and extended, anyone else's replaced, so an untrusted
 * client cannot forge its address.
 */
export function setForwarded(h: FieldEditor, info: ForwardedInfo, trusted: boolean): void {
  const element = forwardedElement(info);
  if (trusted) {
    const xff = h.get("x-forwarded-for");
    h.set("x-forwarded-for", xff ? `${xff}, ${info.client}` : info.client);
    if (!h.has("x-forwarded-proto")) h.set("x-forwarded-proto", info.proto);
    if (!h.has("x-forwarded-host")) h.set("x-forwarded-host", info.host);
    const fwd = h.get("forwarded");
    h.set("forwarded", fwd ? `${fwd}, ${element}` : element);
  } else {
    h.set("x-forwarded-for", info.client);
    h.set("x-forwarded-proto", info.proto);
    h.set("x-forwarded-host", info.host);
    h.set("forwarded", element);
  }
}
