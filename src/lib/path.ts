/** A request path in normal form (RFC 3986 §6.2.2): what is routed, judged by policy, cached and forwarded is one and the same path. */

const UNRESERVED = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") UNRESERVED[c.charCodeAt(0)] = 1;
const HEX = "0123456789ABCDEF";

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** plain says whether a path needs no work: no percent sign, no dot segment, no empty segment (one pass, no allocation). */
function plain(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 37 /* % */) return false;
    if (c === 47 /* / */) {
      const n = path.charCodeAt(i + 1);
      if (n === 47) return false;
      if (n === 46 /* . */) {
        const m = path.charCodeAt(i + 2);
        if (Number.isNaN(m) || m === 47 || (m === 46 && (i + 3 === path.length || path.charCodeAt(i + 3) === 47))) return false;
      }
    }
  }
  return true;
}

/**
 * normalizePath puts an origin-form path into normal form, or returns null for one that cannot be judged safely (400):
 * - percent-encoded unreserved characters are decoded (`/%61dmin` is `/admin`), other escapes keep their byte with upper-case hex (§6.2.2.1–2);
 * - `.` and `..` segments are removed, `%2e` ones too, never above the root (§5.2.4), so `/s/../admin` is `/admin`;
 * - empty segments are merged (`//admin` is `/admin`), as nginx's merge_slashes does for its locations;
 * - an encoded `/`, `\` or NUL, or a `%` not followed by two hex digits, is refused: an upstream that decodes them would see another path than the one
 *   routed (Traefik refuses them too; Apache answers 404).
 * A path that needs none of this is returned as it is, with no allocation.
 */
export function normalizePath(path: string): string | null {
  if (plain(path)) return path;
  let decoded = "";
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c !== 37) {
      decoded += path[i];
      continue;
    }
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = hexValue(path.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    const byte = hi * 16 + lo;
    if (byte === 0x2f || byte === 0x5c || byte === 0) return null;
    decoded += byte < 128 && UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    i += 2;
  }
  const out: string[] = [];
  const segments = decoded.split("/");
  // segments[0] is the empty string before the leading "/".
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === "..") {
      out.pop();
      if (last) out.push("");
    } else if (s === "." || (s === "" && !last)) {
      if (last) out.push("");
    } else out.push(s);
  }
  return `/${out.join("/")}`;
}
