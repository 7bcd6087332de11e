/** When to renew a certificate and how long to wait after a failed attempt; pure functions of time, no I/O. */

import type { RenewalWindow } from "./ari.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** RETRY_MIN_MS is the first wait after a failure. */
export const RETRY_MIN_MS = MINUTE;
/** RETRY_MAX_MS caps the exponential backoff. */
export const RETRY_MAX_MS = 24 * HOUR;
/** RATE_LIMIT_FLOOR_MS is the least wait after a rateLimited error (RFC 8555 §6.6) that carries no Retry-After. */
export const RATE_LIMIT_FLOOR_MS = HOUR;
const RETRY_JITTER = 0.2;
/** EXPIRY_MARGIN_MS is the most a renewal is kept before notAfter; short-lived certificates use a tenth of their lifetime instead. */
const EXPIRY_MARGIN_MS = HOUR;

/** CertTimes is the validity period of a certificate in epoch ms (RFC 5280 §4.1.2.5). */
export type CertTimes = { readonly notBefore: number; readonly notAfter: number };

/** RenewAtOptions tunes renewAt; rand must return a number in [0, 1). */
export type RenewAtOptions = { window?: RenewalWindow; fraction?: number; jitter?: number; rand?: () => number };

/** RetryDelayOptions tunes retryDelay; all durations are ms. */
export type RetryDelayOptions = { retryAfterMs?: number; rateLimited?: boolean; min?: number; max?: number; rand?: () => number };

/** latestRenewal is the last moment worth renewing at: notAfter minus min(1 h, a tenth of the lifetime). */
function latestRenewal(cert: CertTimes): number {
  const lifetime = Math.max(0, cert.notAfter - cert.notBefore);
  return cert.notAfter - Math.min(EXPIRY_MARGIN_MS, lifetime / 10);
}

/** unit draws from rand, bounded to [0, 1]; a broken rand gives the middle. */
function unit(rand: () => number): number {
  const r = rand();
  return Number.isFinite(r) ? Math.min(1, Math.max(0, r)) : 0.5;
}

/**
 * renewAt chooses when to renew (epoch ms, never before now): with an ARI window, a uniformly
 * random time in it, or now if the window or the chosen time is past (RFC 9773 §4.2); without
 * one, fraction (default 2/3) of the lifetime after notBefore, ± jitter (default 1 %) of the
 * lifetime. Either way the result is cut at notAfter minus a margin, so a late window cannot
 * let the certificate lapse; an expired or malformed certificate gives now.
 */
export function renewAt(cert: CertTimes, now: number, opts: RenewAtOptions = {}): number {
  const rand = opts.rand ?? Math.random;
  const lifetime = cert.notAfter - cert.notBefore;
  if (!(lifetime > 0) || now >= cert.notAfter) return now;
  const latest = latestRenewal(cert);
  const w = opts.window;
  let at: number;
  if (w) {
    // §4.2 step 1: a window whose end has passed means renew immediately.
    if (w.end <= now) return now;
    at = w.start + unit(rand) * Math.max(0, w.end - w.start);
  } else {
    const fraction = clamp(opts.fraction, 0, 1, 2 / 3);
    const jitter = clamp(opts.jitter, 0, 1, 0.01);
    at = cert.notBefore + lifetime * (fraction + jitter * (2 * unit(rand) - 1));
  }
  // §4.2 step 2: a chosen time in the past means renew now.
  return Math.max(now, Math.floor(Math.min(at, latest)));
}

/**
 * retryDelay is the wait (ms) before attempt n+1 after n failures: 0 before any failure, then
 * min (default 1 min) doubling per failure up to max (default 24 h), ± 20 % jitter and never
 * above max; a longer CA Retry-After wins (RFC 8555 §6.6); a rateLimited error waits at least
 * its Retry-After or, lacking one, 1 h.
 */
export function retryDelay(failures: number, opts: RetryDelayOptions = {}): number {
  const min = Math.max(0, opts.min ?? RETRY_MIN_MS);
  const max = Math.max(min, opts.max ?? RETRY_MAX_MS);
  const n = Number.isFinite(failures) ? Math.floor(failures) : 1;
  let delay = 0;
  if (n > 0) {
    const base = Math.min(max, min * 2 ** Math.min(n - 1, 52));
    delay = Math.min(max, base * (1 + RETRY_JITTER * (2 * unit(opts.rand ?? Math.random) - 1)));
  }
  const ra = opts.retryAfterMs;
  const retryAfter = ra !== undefined && Number.isFinite(ra) && ra >= 0 ? ra : undefined;
  const floor = opts.rateLimited ? (retryAfter ?? RATE_LIMIT_FLOOR_MS) : (retryAfter ?? 0);
  return Math.round(Math.max(delay, floor));
}

/** clamp bounds v to [lo, hi], or gives fallback when v is missing or not a finite number. */
function clamp(v: number | undefined, lo: number, hi: number, fallback: number): number {
  return v !== undefined && Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}
