/** The certificates the TLS front end serves, as native TLS contexts chosen per handshake by server name; one context per certificate, kept while it is unchanged. */
import tls from "node:tls";

/** CertEntry is a certificate for one server name (none: the fallback for unknown or missing names). */
export type CertEntry = { readonly serverName?: string; readonly cert: string; readonly key: string; readonly fingerprint: string };

/** NativeContext is what Bun's upgradeTLS takes as `secureContext`: the native context inside a node:tls SecureContext. */
export type NativeContext = unknown;

/**
 * nativeOf makes the native context of a certificate. `SecureContext.context` is not documented by Bun; test/front-tls.test.ts fails if it goes away, and this
 * is the one place that reads it.
 */
export function nativeOf(cert: string, key: string): NativeContext {
  const c = tls.createSecureContext({ cert, key, minVersion: "TLSv1.2" }) as unknown as { context?: unknown };
  if (c.context === undefined) throw new Error("this Bun has no SecureContext.context: the TLS front end cannot choose certificates");
  return c.context;
}

/** PreparedContexts is a certificate set loaded by prepare(), served once committed. */
export type PreparedContexts = {
  readonly byName: Map<string, NativeContext>;
  readonly byFingerprint: Map<string, NativeContext>;
  readonly fallback: NativeContext | undefined;
};

/**
 * TlsContexts maps server names to native contexts: exact names first, then a wildcard of the name's parent (`*.example.com` covers `a.example.com`), then
 * the fallback. set() keeps the context of every certificate whose fingerprint it already had, so TLS sessions (tied to their context) keep resuming; a new
 * certificate applies from the next handshake on.
 */
export class TlsContexts {
  private byName = new Map<string, NativeContext>();
  private byFingerprint = new Map<string, NativeContext>();
  private fallback: NativeContext | undefined;

  /** prepare loads the certificates of a new set without serving them yet; it throws when one cannot be loaded. */
  prepare(entries: readonly CertEntry[]): PreparedContexts {
    const byName = new Map<string, NativeContext>();
    const byFingerprint = new Map<string, NativeContext>();
    let fallback: NativeContext | undefined;
    for (const e of entries) {
      let ctx = byFingerprint.get(e.fingerprint) ?? this.byFingerprint.get(e.fingerprint);
      if (ctx === undefined) ctx = nativeOf(e.cert, e.key);
      byFingerprint.set(e.fingerprint, ctx);
      if (e.serverName === undefined) fallback ??= ctx;
      else byName.set(e.serverName.toLowerCase(), ctx);
    }
    return { byName, byFingerprint, fallback };
  }

  /** commit serves a prepared set from the next handshake on. */
  commit(p: PreparedContexts): void {
    this.byName = p.byName;
    this.byFingerprint = p.byFingerprint;
    this.fallback = p.fallback;
  }

  /** set prepares and commits at once. */
  set(entries: readonly CertEntry[]): void {
    this.commit(this.prepare(entries));
  }

  /** serves says whether a certificate of its own (not the fallback) answers serverName. */
  serves(serverName: string | undefined): boolean {
    if (serverName === undefined) return false;
    if (this.byName.has(serverName)) return true;
    const dot = serverName.indexOf(".");
    return dot > 0 && this.byName.has(`*${serverName.slice(dot)}`);
  }

  /** select is the context for a handshake that asked for serverName (undefined: no SNI); undefined when nothing, not even a fallback, is served. */
  select(serverName: string | undefined): NativeContext | undefined {
    if (serverName !== undefined) {
      const exact = this.byName.get(serverName);
      if (exact !== undefined) return exact;
      const dot = serverName.indexOf(".");
      if (dot > 0) {
        const wild = this.byName.get(`*${serverName.slice(dot)}`);
        if (wild !== undefined) return wild;
      }
    }
    return this.fallback;
  }
}
