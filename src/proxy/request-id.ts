/** Request ids: kept from the client when well formed, else made from a per-process random prefix and a counter. */

const PREFIX = crypto.getRandomValues(new Uint32Array(2)).reduce((s, n) => s + n.toString(16).padStart(8, "0"), "");
let counter = 0;
const MAX_LENGTH = 128;

/** isWellFormedId accepts 1–128 characters of [A-Za-z0-9._:@/+=-], enough for UUIDs, ULIDs and trace ids, and nothing that could break a log line or header. */
export function isWellFormedId(id: string): boolean {
  const n = id.length;
  if (n === 0 || n > MAX_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i);
    const ok = (c >= 48 && c <= 58) || (c >= 64 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95 || c === 47 || c === 43 || c === 61;
    if (!ok) return false;
  }
  return true;
}

/** requestId returns the client's X-Request-ID when well formed, else a new id unique to this process run (no randomness per request). */
export function requestId(fromClient: string | null): string {
  if (fromClient !== null && isWellFormedId(fromClient)) return fromClient;
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${PREFIX}-${counter.toString(16)}`;
}
