/** Following what other nodes store in shared storage: etcd's watch for changes as they happen, a periodic re-read beside it, and a call when the storage answers again. */
import type { Storage } from "./storage.ts";

/** FollowCalls: reread looks at the stored certificates again; reachable runs when the storage answers again after an outage. */
export type FollowCalls = { readonly reread: () => void; readonly reachable: () => void };

/** SharedFollow follows one storage at a time; following another (or none) stops the last. */
export class SharedFollow {
  private stopLast: (() => void) | undefined;

  /**
   * follow re-reads every `everyMs` and 100 ms after the watch reports a change under sites/ (a burst of keys is one re-read); the timer is there for what a
   * broken watch missed. undefined storage (certs_dir, which only this node writes) follows nothing.
   */
  follow(storage: Storage | undefined, everyMs: number, calls: FollowCalls): void {
    this.stop();
    if (!storage) return;
    const timer = setInterval(calls.reread, everyMs);
    timer.unref?.();
    let soon: Timer | undefined;
    const unwatch = storage.watch?.("sites/", () => {
      clearTimeout(soon);
      soon = setTimeout(calls.reread, 100);
    });
    const unreachable = storage.onReachable?.(() => {
      calls.reread();
      calls.reachable();
    });
    this.stopLast = () => {
      clearInterval(timer);
      clearTimeout(soon);
      unwatch?.();
      unreachable?.();
    };
  }

  /** stop stops following. */
  stop(): void {
    this.stopLast?.();
    this.stopLast = undefined;
  }
}
