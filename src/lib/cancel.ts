/** Cancel: the part of AbortController/AbortSignal the request path uses (aborted, reason, abort listeners), as a plain object: a native AbortController per request cost a proxied request a tenth of its time. */

/** CancelSignal is what a request's cancellation is read through: an AbortSignal is one, and so is a Cancel. */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** Cancel is a controller and its signal in one: abort(reason) sets aborted and reason, then calls each listener once (a listener added later is never called, as with AbortSignal). */
export class Cancel implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;

  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.aborted) (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const l = this.listeners;
    if (l === undefined) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  /** abort cancels once: later calls change nothing. A listener that throws does not stop the others. */
  abort(reason: unknown = "aborted"): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const l = this.listeners;
    this.listeners = undefined;
    if (l === undefined) return;
    for (const f of l) {
      try {
        f();
      } catch {
        // as an event listener's throw: reported nowhere, the others still run
      }
    }
  }

  /** follow makes this cancel when `other` does, with its reason (AbortSignal.any of two, without native objects). */
  follow(other: CancelSignal): this {
    if (other.aborted) this.abort(other.reason);
    else other.addEventListener("abort", () => this.abort(other.reason), { once: true });
    return this;
  }
}

/** NEVER is a signal that never aborts (a background exchange has no client to leave): it keeps no listener. */
export const NEVER: CancelSignal = {
  aborted: false,
  reason: undefined,
  addEventListener: () => undefined,
  removeEventListener: () => undefined,
};

/** toAbortSignal is a native AbortSignal that aborts with s, for the APIs that take one (fetch, WebSocket). */
export function toAbortSignal(s: CancelSignal): AbortSignal {
  if (s instanceof AbortSignal) return s;
  if (s.aborted) return AbortSignal.abort(s.reason);
  const c = new AbortController();
  s.addEventListener("abort", () => c.abort(s.reason), { once: true });
  return c.signal;
}
