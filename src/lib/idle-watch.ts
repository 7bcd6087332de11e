/** Idle detection with one shared sweep instead of a timer per item (upstream bodies, front-end connections waiting for a head): a timer per request costs more than the request. Bun's own socket idle timer fires on a tick of several seconds, too coarse for these limits. */

/** Watched is one thing that may go idle (a response body, a connection waiting for a head): when it last moved, how long it may rest, what to do when it rests too long. */
export type Watched = { last: number; limit: number; readonly expire: () => void };

const SWEEP_MS = 250;
const watched = new Set<Watched>();
let timer: Timer | undefined;
/**
 * nextDue is the earliest moment anything watched may be due, as of the last sweep and the watches since: activity only moves a deadline later, so the sweeps
 * before it are skipped (9,000 idle keep-alive connections cost a comparison a tick, not a walk). A deadline made earlier (a shorter limit) must be given to
 * watch again.
 */
let nextDue = Number.POSITIVE_INFINITY;

function sweep(): void {
  const now = performance.now();
  if (now <= nextDue) return;
  // From here what expire() watches (again) lowers nextDue itself.
  nextDue = Number.POSITIVE_INFINITY;
  let next = Number.POSITIVE_INFINITY;
  for (const w of watched) {
    const due = w.last + w.limit;
    if (now > due) {
      watched.delete(w);
      try {
        w.expire();
      } catch {
        // never throw from a timer
      }
    } else if (due < next) next = due;
  }
  nextDue = Math.min(nextDue, next);
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/** watch starts watching w (its `last` should be set to now), or takes its new deadline after its limit was made shorter; the sweep runs only while something is watched. */
export function watch(w: Watched): void {
  watched.add(w);
  const due = w.last + w.limit;
  if (due < nextDue) nextDue = due;
  if (timer === undefined) {
    timer = setInterval(sweep, SWEEP_MS);
    timer.unref();
  }
}

/** unwatch stops watching w; safe to call twice. */
export function unwatch(w: Watched): void {
  watched.delete(w);
}
