/** TLS session ticket keys kept in the (shared) certificate storage and rotated under its lock, so that every worker and node could resume every client's session. */
import { randomBytes } from "node:crypto";
import type { Storage } from "./storage.ts";

/** TICKET_KEYS_KEY is where the keys live: a secret value (sealed in etcd under encryption_key_file, 0600 in certs_dir). */
export const TICKET_KEYS_KEY = "tls/ticket-keys.json";
/** ROTATE_MS is how long a key encrypts new tickets; the one before it still decrypts for as long again (tickets live at most that long). */
export const ROTATE_MS = 12 * 3600_000;
/** KEY_BYTES: OpenSSL's ticket key (the form node:tls's ticketKeys and nginx's ssl_session_ticket_key take): 16 bytes of name, 16 of HMAC key, 16 of AES key. */
const KEY_BYTES = 48;
/** CLOCK_SKEW_MS is how far ahead of this node's clock another node's may run. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** TicketKey is one key and when it started to encrypt tickets (epoch ms). */
export type TicketKey = { readonly key: Buffer; readonly since: number };

/** TicketKeySet: current encrypts new tickets; previous (when there is one) still decrypts the tickets it made. */
export type TicketKeySet = { readonly current: TicketKey; readonly previous?: TicketKey };

type Stored = { current: { key: string; since: number }; previous?: { key: string; since: number } };

function decode(text: string): TicketKeySet | undefined {
  try {
    const s = JSON.parse(text) as Stored;
    const one = (k: { key: string; since: number } | undefined): TicketKey | undefined => {
      const key = k && typeof k.key === "string" ? Buffer.from(k.key, "base64") : undefined;
      return key?.length === KEY_BYTES && Number.isFinite(k!.since) ? { key, since: k!.since } : undefined;
    };
    const current = one(s.current);
    if (!current) return undefined;
    const previous = one(s.previous);
    return previous ? { current, previous } : { current };
  } catch {
    return undefined;
  }
}

function encode(set: TicketKeySet): string {
  const one = (k: TicketKey) => ({ key: k.key.toString("base64"), since: k.since });
  return JSON.stringify(set.previous ? { current: one(set.current), previous: one(set.previous) } : { current: one(set.current) });
}

/**
 * ticketKeys returns the keys in storage, creating or rotating them first when there are none, when they cannot be read, or when the current one is older
 * than rotateMs. The change is made under the storage's lock after a second read, so that nodes starting or rotating at once agree on one set.
 */
export async function ticketKeys(storage: Storage, now = Date.now(), rotateMs = ROTATE_MS): Promise<TicketKeySet> {
  // A key stamped a little ahead of this clock (another node's runs fast) is fresh, not replaced: replacing it would drop the previous key too early.
  const fresh = (s: TicketKeySet | undefined): boolean => s !== undefined && now - s.current.since < rotateMs && s.current.since <= now + CLOCK_SKEW_MS;
  const seen = decode((await storage.load(TICKET_KEYS_KEY)) ?? "");
  if (seen && fresh(seen)) return seen;
  const release = await storage.lock("ticket-keys");
  try {
    const again = decode((await storage.load(TICKET_KEYS_KEY)) ?? "");
    if (again && fresh(again)) return again;
    const current = { key: randomBytes(KEY_BYTES), since: now };
    const next: TicketKeySet = again ? { current, previous: again.current } : { current };
    await storage.store(TICKET_KEYS_KEY, encode(next), { secret: true });
    return next;
  } finally {
    await release();
  }
}
