/** HTTP semantics shared by the proxy and the upstream client (RFC 9110). */

/** HOP_BY_HOP are the fields a proxy does not pass on (RFC 9110 §7.6.1), plus Proxy-Connection and Keep-Alive that old clients still send. */
export const HOP_BY_HOP: readonly string[] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/** IDEMPOTENT are the methods a request may be repeated with (RFC 9110 §9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** TOKEN_CHARS marks the tchar bytes of RFC 9110 §5.6.2: digits, letters and !#$%&'*+-.^_`|~. */
const TOKEN_CHARS = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN_CHARS[c.charCodeAt(0)] = 1;

/** isTokenChar says whether a character code may appear in a token (a method, a field name): a table lookup. */
export function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN_CHARS[c] === 1;
}

/** lowerName lowercases a field name, without a new string when it is lowercase already (most clients send them so, and this code writes them so). */
export function lowerName(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}
