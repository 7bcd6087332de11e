/** Long work on a live gateway (a reload with thousands of route files) done in slices, so requests keep being served in between. */

/** SLICE_MS is the longest a slice keeps the event loop before letting requests through. */
export const SLICE_MS = 8;

/** yieldToRequests lets pending I/O (requests) run before the work goes on. */
export function yieldToRequests(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
