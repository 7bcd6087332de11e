/** Endpoint state that outlives a config generation: in-flight count, cool-down after a refused connection, last error. */

/** Endpoint is one upstream address of one route; the same object is handed to every generation that keeps that route and URL. */
export class Endpoint {
  inflight = 0;
  /** downUntil is the time (ms, performance.now) before which the endpoint is skipped. */
  downUntil = 0;
  consecutiveFailures = 0;
  lastError: string | undefined;

  constructor(readonly route: string, readonly url: string) {}

  /** available says whether the endpoint may be picked at time now. */
  available(now: number): boolean {
    return now >= this.downUntil;
  }

  /** markDown ejects the endpoint for cooldown ms after a failure to connect. */
  markDown(now: number, cooldown: number, error: string): void {
    this.consecutiveFailures++;
    this.downUntil = now + cooldown;
    this.lastError = error;
  }

  /** markUp clears the failure count after a response. */
  markUp(): void {
    if (this.consecutiveFailures !== 0) {
      this.consecutiveFailures = 0;
      this.downUntil = 0;
    }
  }
}

/** EndpointRegistry hands out Endpoints by route and URL, so health and load survive a reload. */
export class EndpointRegistry {
  private readonly endpoints = new Map<string, Endpoint>();

  /** get returns the endpoint for (route, url), creating it on first use. */
  get(route: string, url: string): Endpoint {
    const key = `${route} ${url}`;
    let e = this.endpoints.get(key);
    if (!e) {
      e = new Endpoint(route, url);
      this.endpoints.set(key, e);
    }
    return e;
  }

  /** retain forgets endpoints not in keep (after a new generation is live); requests in flight still hold theirs. */
  retain(keep: ReadonlySet<Endpoint>): Endpoint[] {
    const dropped: Endpoint[] = [];
    for (const [k, e] of this.endpoints) {
      if (!keep.has(e)) {
        this.endpoints.delete(k);
        dropped.push(e);
      }
    }
    return dropped;
  }

  /** all lists the endpoints known now. */
  all(): IterableIterator<Endpoint> {
    return this.endpoints.values();
  }
}
