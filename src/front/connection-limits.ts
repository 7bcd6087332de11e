/** Caps on open connections: all clients together and each client address ([limits] max_connections, max_connections_per_client), counted by Map. */

/** ConnectionLimits counts open connections per client address; memory is one Map entry per client with a connection open, none once it has closed them all. */
export class ConnectionLimits {
  private readonly perClient = new Map<string, number>();
  private open = 0;

  constructor(
    private maxTotal: number,
    private maxPerClient: number,
  ) {}

  /** resize sets new caps (a reload); connections open now stay counted, and only new ones are judged by them. */
  resize(maxTotal: number, maxPerClient: number): void {
    this.maxTotal = maxTotal;
    this.maxPerClient = maxPerClient;
  }

  /** total is the number of connections open now. */
  get total(): number {
    return this.open;
  }

  /** countOf is the number of connections `client` has open now. */
  countOf(client: string): number {
    return this.perClient.get(client) ?? 0;
  }

  /** admit counts a new connection from client and returns undefined, or, counting nothing, which cap it would pass ("total" or "client"). */
  admit(client: string): "total" | "client" | undefined {
    if (this.open >= this.maxTotal) return "total";
    const n = this.perClient.get(client) ?? 0;
    if (n >= this.maxPerClient) return "client";
    this.perClient.set(client, n + 1);
    this.open++;
    return undefined;
  }

  /** release uncounts a connection admitted for client; releasing more than were admitted is ignored. */
  release(client: string): void {
    const n = this.perClient.get(client);
    if (n === undefined) return;
    if (n <= 1) this.perClient.delete(client);
    else this.perClient.set(client, n - 1);
    this.open--;
  }
}
