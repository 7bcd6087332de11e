/** The last (re)loads of this instance, kept in memory for the status page: time, result and the problems of a rejected one. */
import type { ReloadRow } from "./status-page.ts";

/** RELOAD_HISTORY is how many (re)loads the status page shows. */
export const RELOAD_HISTORY = 10;

/** ReloadHistory keeps the last RELOAD_HISTORY outcomes (the start, seq 0, included), newest first; O(RELOAD_HISTORY) per add. */
export class ReloadHistory {
  private readonly entries: ReloadRow[] = [];

  /** add keeps one outcome (the same object the instance writes to its status file). */
  add(outcome: ReloadRow): void {
    this.entries.unshift({ seq: outcome.seq, time: outcome.time, result: outcome.result, problems: [...outcome.problems] });
    if (this.entries.length > RELOAD_HISTORY) this.entries.length = RELOAD_HISTORY;
  }

  /** list is the kept outcomes, newest first (a copy). */
  list(): ReloadRow[] {
    return [...this.entries];
  }
}
