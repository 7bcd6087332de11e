/** The process's kept-alive connection pools by upstream address: every route that names an address shares one pool, as nginx's upstream block does. */
import { H1Pool } from "./h1-client.ts";

/** Shared is one address's pool and how many endpoints hold it. */
type Shared = { readonly pool: H1Pool; holders: number };

const byAddress = new Map<string, Shared>();

/**
 * acquirePool returns the connection pool of an http:// URL's address (an IP literal or a name the system resolves per connection), shared with every other
 * holder of that address, or undefined for other schemes. Requests carry their own Host field, so connections are not tied to a route. Each acquire needs a
 * releasePool.
 */
export function acquirePool(url: string): H1Pool | undefined {
  if (!url.startsWith("http://")) return undefined;
  const u = new URL(url);
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === "" ? 80 : Number(u.port);
  const key = `${host} ${port}`;
  let s = byAddress.get(key);
  if (s === undefined) {
    s = { pool: new H1Pool(host, port), holders: 0 };
    byAddress.set(key, s);
  }
  s.holders++;
  return s.pool;
}

/** releasePool gives back one hold; the last one closes the pool's idle connections (exchanges in flight finish) and forgets the address. */
export function releasePool(pool: H1Pool): void {
  const key = `${pool.hostname} ${pool.port}`;
  const s = byAddress.get(key);
  if (s?.pool !== pool || --s.holders > 0) return;
  byAddress.delete(key);
  pool.close();
}
