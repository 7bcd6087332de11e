/** Byte ranges of a complete representation (RFC 9110 §14): one range served, several or malformed ones ignored. */

/**
 * parseRange reads one `bytes=` range against size: [start, end] inclusive, "unsatisfiable", or undefined to ignore the header (malformed or several ranges,
 * RFC 9110 §14.2).
 */
export function parseRange(header: string, size: number): [number, number] | "unsatisfiable" | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== "" && Number(m[2]) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return [start, end];
}

/**
 * ifRangeHolds: a Range applies when If-Range is absent or names the current representation: a strong ETag equal to etag, or a date equal to lastModified (RFC
 * 9110 §13.1.5).
 */
export function ifRangeHolds(ifRange: string | null, etag: string | null, lastModified: string | null): boolean {
  if (ifRange === null) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith("W/")) return etag !== null && !v.startsWith("W/") && v === etag;
  const d = Date.parse(v);
  return lastModified !== null && !Number.isNaN(d) && Math.floor(d / 1000) === Math.floor(Date.parse(lastModified) / 1000);
}
