/** Basic auth ([basic_auth], RFC 7617) as a request filter: password hashes only, checked off the event loop, a bounded number at a time, successes remembered. */
import type { Cell } from "../../observability/metrics.ts";
import type { BasicAuth } from "../../config/policy-types.ts";
import type { RequestContext, RequestFilter } from "../context.ts";
import { failWith, GatewayError } from "../errors.ts";

/** VERIFY_AT_ONCE bounds the password checks running together: an argon2id check holds its memory cost (19 MiB with our hashes) while it runs. */
const VERIFY_AT_ONCE = 8;
/** VERIFY_QUEUE bounds the checks waiting; beyond it a request gets 503 rather than a queue that grows with an attacker's rate. */
const VERIFY_QUEUE = 256;
/** REMEMBERED bounds the successful checks kept (per route), so that a browser's every request does not cost a hash. */
const REMEMBERED = 1024;

let running = 0;
const waiting: (() => void)[] = [];

/** verify checks a password against a hash on Bun's thread pool, at most VERIFY_AT_ONCE at a time; undefined when too many wait already. */
async function verify(password: string, hash: string): Promise<boolean | undefined> {
  if (running >= VERIFY_AT_ONCE) {
    if (waiting.length >= VERIFY_QUEUE) return undefined;
    await new Promise<void>((resolve) => waiting.push(resolve));
  }
  running++;
  try {
    return await Bun.password.verify(password, hash);
  } catch {
    return false;
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** HASH_OPTIONS are argon2id's parameters for new hashes: OWASP's first recommendation (19 MiB, 2 passes, 1 lane), some 20–40 ms a check. */
const HASH_OPTIONS = { algorithm: "argon2id", memoryCost: 19456, timeCost: 2 } as const;

/** hashPassword makes the hash that `gatehouse hash-password` prints and [basic_auth] users hold. */
export function hashPassword(password: string): Promise<string> {
  return Bun.password.hash(password, HASH_OPTIONS);
}

let dummyHash: string | undefined;
/** dummy is a hash to check unknown users against, so that an unknown name takes as long as a wrong password. */
function dummy(): string {
  dummyHash ??= Bun.password.hashSync(crypto.randomUUID(), HASH_OPTIONS);
  return dummyHash;
}

/** credentials reads `Basic base64(user:password)` (RFC 7617 §2, UTF-8); undefined when the field is missing or malformed. */
export function credentials(field: string | null): { user: string; password: string } | undefined {
  if (field === null || field.length < 7 || field.slice(0, 6).toLowerCase() !== "basic ") return undefined;
  const b64 = field.slice(6).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const text = Buffer.from(b64, "base64").toString("utf8");
  const colon = text.indexOf(":");
  return colon < 0 ? undefined : { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * basicAuthFilter lets through requests with a user's right password, and answers the others 401 with the realm's challenge. A success is remembered under a
 * salted SHA-256 of the credentials (never the password itself), so the next request of that browser costs a hash of microseconds, not an argon2id check.
 * Credentials never reach a log; Authorization is removed before forwarding unless forward_authorization is set.
 */
export function basicAuthFilter(cfg: BasicAuth, denied: Cell): RequestFilter {
  const salt = crypto.randomUUID();
  const remembered = new Map<string, string>();
  const challenge = { "www-authenticate": `Basic realm="${cfg.realm}", charset="UTF-8"` };
  const refuse = (ctx: RequestContext, why: string) => {
    denied.value++;
    return failWith(ctx, new GatewayError(401, "authentication required", "downstream", `basic auth: ${why}`), challenge);
  };
  const pass = (ctx: RequestContext, user: string) => {
    ctx.user = user;
    if (!cfg.forwardAuthorization) ctx.headers.delete("authorization");
    return undefined;
  };
  return (ctx) => {
    const field = ctx.headers.get("authorization");
    const c = credentials(field);
    if (c === undefined) return refuse(ctx, field === null ? "no credentials" : "malformed credentials");
    const hash = cfg.users.get(c.user);
    const key = new Bun.CryptoHasher("sha256").update(salt).update(field!).digest("base64");
    if (hash !== undefined && remembered.get(key) === hash) return pass(ctx, c.user);
    return verify(c.password, hash ?? dummy()).then((ok) => {
      if (ok === undefined) return failWith(ctx, new GatewayError(503, "too many logins in progress, try again", "downstream", "basic auth: check queue full"));
      if (!ok || hash === undefined) return refuse(ctx, "wrong user or password");
      if (remembered.size >= REMEMBERED) remembered.delete(remembered.keys().next().value!);
      remembered.set(key, hash);
      return pass(ctx, c.user);
    });
  };
}
