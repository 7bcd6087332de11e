/** What HTTP and TCP upstream endpoints share: the health checks' verdict and passive ejection, a cool-down that doubles with each ejection in a row. */

/** Ejectable is an upstream endpoint's availability: healthy by its active checks, and not ejected after failures. */
export class Ejectable {
  /** healthy is the active health checks' verdict; true until checks say otherwise (and without checks). */
  healthy = true;
  /** downUntil is the time (ms, performance.now) before which the endpoint is skipped. */
  downUntil = 0;
  /** ejections counts passive ejections in a row; each doubles the cool-down, a success resets it. */
  ejections = 0;
  lastError: string | undefined;
  /** lastCheck is the time (ms, epoch) and outcome of the last active check. */
  lastCheck: { time: number; ok: boolean; detail: string } | undefined;

  /** available says whether the endpoint may be picked at time now: healthy by the active checks and not ejected. */
  available(now: number): boolean {
    return this.healthy && now >= this.downUntil;
  }

  /** cooled says whether the passive cool-down is over, whatever the active checks say (for the all-unhealthy fallback). */
  cooled(now: number): boolean {
    return now >= this.downUntil;
  }

  /**
   * startEjection ejects the endpoint at now for cooldown, doubled with each ejection in a row, at most max; false when it is ejected already (tried anyway
   * by a fallback): the cool-down neither grows nor restarts.
   */
  protected startEjection(now: number, cooldown: number, max: number): boolean {
    if (now < this.downUntil) return false;
    this.downUntil = now + Math.min(max, cooldown * 2 ** Math.min(this.ejections, 20));
    this.ejections++;
    return true;
  }

  /** endEjection clears the ejection after a success and returns how many ejections in a row it ended (0: it was not ejected). */
  protected endEjection(): number {
    const n = this.ejections;
    this.ejections = 0;
    this.downUntil = 0;
    return n;
  }
}
