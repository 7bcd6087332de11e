import { describe, expect, test } from "bun:test";
import { renewAt, retryDelay } from "./renewal-time.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2025, 0, 1);
const cert = { notBefore: T0, notAfter: T0 + 90 * DAY };
const fixed = (r: number) => () => r;
/** sweep returns f over rand values 0, 1/n, …, (n-1)/n plus Math.random draws. */
const sweep = (f: (rand: () => number) => number, n = 500): number[] => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(f(fixed(i / n)), f(Math.random));
  return out;
};

describe("renewAt", () => {
  test("picks a uniform time inside a future ARI window", () => {
    const now = T0 + 10 * DAY;
    const window = { start: T0 + 60 * DAY, end: T0 + 62 * DAY };
    const all = sweep((rand) => renewAt(cert, now, { window, rand }));
    for (const t of all) expect(t >= window.start && t <= window.end).toBe(true);
    expect(renewAt(cert, now, { window, rand: fixed(0) })).toBe(window.start);
    expect(renewAt(cert, now, { window, rand: fixed(0.5) })).toBe(T0 + 61 * DAY);
    expect(Math.min(...all)).toBeLessThan(window.start + 0.1 * DAY); // spread over the whole window
    expect(Math.max(...all)).toBeGreaterThan(window.end - 0.1 * DAY);
  });

  test("renews now when the window or the chosen time is past (RFC 9773 §4.2)", () => {
    const now = T0 + 61 * DAY;
    expect(renewAt(cert, now, { window: { start: T0 + 50 * DAY, end: T0 + 55 * DAY }, rand: fixed(0.9) })).toBe(now);
    const straddling = { start: T0 + 60 * DAY, end: T0 + 62 * DAY };
    expect(renewAt(cert, now, { window: straddling, rand: fixed(0.1) })).toBe(now);
    expect(renewAt(cert, now, { window: straddling, rand: fixed(0.75) })).toBe(T0 + 61.5 * DAY);
  });

  test("cuts a window that reaches past expiry at notAfter minus a margin", () => {
    const window = { start: T0 + 89 * DAY, end: T0 + 95 * DAY };
    for (const t of sweep((rand) => renewAt(cert, T0, { window, rand }))) expect(t).toBeLessThanOrEqual(cert.notAfter - HOUR);
  });

  test("without a window, renews at 2/3 of the lifetime ± 1 %", () => {
    expect(renewAt(cert, T0, { rand: fixed(0.5) })).toBe(T0 + 60 * DAY);
    expect(renewAt(cert, T0, { rand: fixed(0) })).toBe(T0 + 60 * DAY - 0.9 * DAY);
    for (const t of sweep((rand) => renewAt(cert, T0, { rand }))) {
      expect(t).toBeGreaterThanOrEqual(T0 + 59.1 * DAY);
      expect(t).toBeLessThanOrEqual(T0 + 60.9 * DAY);
    }
    expect(renewAt(cert, T0, { fraction: 0.5, jitter: 0, rand: Math.random })).toBe(T0 + 45 * DAY);
  });

  test("keeps a short-lived certificate's renewal before its end", () => {
    const short = { notBefore: T0, notAfter: T0 + 6 * DAY };
    expect(renewAt(short, T0, { fraction: 1, jitter: 0 })).toBe(short.notAfter - HOUR);
  });

  test("returns now for an expired, overdue or malformed certificate", () => {
    const late = cert.notAfter + DAY;
    expect(renewAt(cert, late, { rand: fixed(0.5) })).toBe(late);
    expect(renewAt(cert, late, { window: { start: late + DAY, end: late + 2 * DAY } })).toBe(late);
    expect(renewAt(cert, T0 + 80 * DAY, { rand: fixed(0.5) })).toBe(T0 + 80 * DAY);
    expect(renewAt({ notBefore: T0, notAfter: T0 }, T0 + 5)).toBe(T0 + 5);
  });
});

describe("retryDelay", () => {
  const mid = { rand: fixed(0.5) };

  test("is zero before any failure and doubles from 1 min", () => {
    expect(retryDelay(0, mid)).toBe(0);
    expect([1, 2, 3, 4, 5].map((n) => retryDelay(n, mid))).toEqual([1, 2, 4, 8, 16].map((m) => m * MIN));
    expect(retryDelay(3, { ...mid, min: 1000 })).toBe(4000);
  });

  test("jitters by ± 20 % and caps at 24 h", () => {
    const all = sweep((rand) => retryDelay(3, { rand }));
    for (const d of all) expect(d >= 3.2 * MIN && d <= 4.8 * MIN).toBe(true);
    expect(Math.min(...all)).toBeLessThan(3.3 * MIN);
    expect(Math.max(...all)).toBeGreaterThan(4.7 * MIN);
    expect(retryDelay(12, mid)).toBe(DAY);
    expect(retryDelay(5000, { rand: fixed(0.9999) })).toBe(DAY);
    expect(retryDelay(5000, { rand: fixed(0) })).toBe(0.8 * DAY);
    expect(retryDelay(4, { ...mid, max: 5 * MIN })).toBe(5 * MIN);
  });

  test("lets a longer Retry-After win", () => {
    expect(retryDelay(1, { ...mid, retryAfterMs: 10 * MIN })).toBe(10 * MIN);
    expect(retryDelay(5, { ...mid, retryAfterMs: 30_000 })).toBe(16 * MIN);
    expect(retryDelay(1, { ...mid, retryAfterMs: 3 * DAY })).toBe(3 * DAY);
    expect(retryDelay(2, { ...mid, retryAfterMs: Number.NaN })).toBe(2 * MIN);
  });

  test("waits at least 1 h after a rate limit unless Retry-After says otherwise", () => {
    expect(retryDelay(1, { ...mid, rateLimited: true })).toBe(HOUR);
    expect(retryDelay(1, { ...mid, rateLimited: true, retryAfterMs: 10 * MIN })).toBe(10 * MIN);
    expect(retryDelay(1, { ...mid, rateLimited: true, retryAfterMs: 3 * HOUR })).toBe(3 * HOUR);
    expect(retryDelay(9, { ...mid, rateLimited: true })).toBe(256 * MIN);
  });
});
