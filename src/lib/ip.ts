/** IP address syntax (IPv4 dotted quad, RFC 4291 §2.2 text forms for IPv6), without node:net: that module pulls in Node's streams and costs a noticeable part of start-up. */

function isDecOctet(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 3 || (n > 1 && s.charCodeAt(0) === 48)) return false;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return false;
    v = v * 10 + c;
  }
  return v <= 255;
}

/** isIPv4 accepts a.b.c.d with each part 0–255 and no leading zeros. */
export function isIPv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every(isDecOctet);
}

function isHexGroup(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 4) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false;
  }
  return true;
}

/** isIPv6 accepts the RFC 4291 text forms: eight groups, one "::" for a run of zero groups, an IPv4 tail, and a zone id after "%". */
export function isIPv6(s: string): boolean {
  const pct = s.indexOf("%");
  if (pct >= 0) {
    if (pct === s.length - 1) return false;
    s = s.slice(0, pct);
  }
  let groups = 0;
  const lastColon = s.lastIndexOf(":");
  if (lastColon < 0) return false;
  if (s.indexOf(".", lastColon) >= 0) {
    if (!isIPv4(s.slice(lastColon + 1))) return false;
    groups = 2;
    s = `${s.slice(0, lastColon + 1)}0`;
    groups--; // the placeholder group below stands for one of the two
  }
  const dbl = s.indexOf("::");
  if (dbl >= 0 && s.indexOf("::", dbl + 1) >= 0) return false;
  if (dbl < 0) {
    const parts = s.split(":");
    return parts.every(isHexGroup) && parts.length + groups === 8;
  }
  const head = s.slice(0, dbl);
  const tail = s.slice(dbl + 2);
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  return h.every(isHexGroup) && t.every(isHexGroup) && h.length + t.length + groups <= 7;
}

/** isIP is 4, 6 or 0 (not an address), like node:net's. */
export function isIP(s: string): 0 | 4 | 6 {
  return isIPv4(s) ? 4 : isIPv6(s) ? 6 : 0;
}
