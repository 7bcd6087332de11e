/** Idle detection with one shared sweep instead of a timer per item (upstream bodies, front-end connections waiting for a head): a timer per request costs more than the request. Bun's own socket idle timer fires on a tick of several seconds, too coarse for these limits. */

/** Watched is one thing that may go idle (a response body, a connection waiting for a head): when it last moved, how long it may rest, what to do when it rests too long. */
export type Watched = { last: number; limit: number; readonly expire: () => void };

const SWEEP_MS = 250;
const watched = new Set<Watched>();
let timer: Timer | undefined;

function sweep(): void {
  const now = performance.now();
  for (const w of watched) {
    if (now - w.last > w.limit) {
      watched.delete(w);
      try {
        w.expire();
      } catch {
        // never throw from a timer
      }
    }
  }
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/** watch starts watching w (its `last` should be set to now); the sweep runs only while something is watched. */
export function watch(w: Watched): void {
  watched.add(w);
  if (timer === undefined) {
    timer = setInterval(sweep, SWEEP_MS);
    timer.unref();
  }
}

/** unwatch stops watching w; safe to call twice. */
export function unwatch(w: Watched): void {
  watched.delete(w);
}
