/** The DNS-01 solver (RFC 8555 §8.4): a TXT record at _acme-challenge.NAME, added and removed with TSIG-signed RFC 2136 updates. */
import { log } from "../../observability/log.ts";
import { addTxt, deleteTxt, queryTxt, type DnsUpdateOptions } from "./dns-update.ts";
import type { Challenge, Solver, Waiter } from "./solver.ts";

/** TXT_TTL is the TTL of a challenge record: short, it lives for one validation. */
const TXT_TTL = 60;
/** VISIBLE_WITHIN_MS bounds the wait for the server to answer the new record; POLL_MS is the pause between looks. */
const VISIBLE_WITHIN_MS = 30_000;
const POLL_MS = 250;

/** challengeName is the DNS-01 record name for an identifier (RFC 8555 §8.4): a wildcard's base name. */
export function challengeName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, "")}`;
}

/** Dns01Solver adds the record on the zone's primary and waits until that server answers it; cleanUp deletes only records its present added. */
export class Dns01Solver implements Solver, Waiter {
  readonly type = "dns-01";
  readonly presentStep = "dns-update";
  readonly waitStep = "dns-check";
  /** added counts the records present added and cleanUp has not yet removed, by name and value. */
  private readonly added = new Map<string, number>();

  constructor(private readonly opts: DnsUpdateOptions) {}

  async present(c: Challenge): Promise<void> {
    const name = challengeName(c.identifier);
    await addTxt(this.opts, name, c.keyAuthorization, TXT_TTL);
    const k = `${name} ${c.keyAuthorization}`;
    this.added.set(k, (this.added.get(k) ?? 0) + 1);
  }

  async wait(c: Challenge): Promise<void> {
    const name = challengeName(c.identifier);
    const deadline = Date.now() + VISIBLE_WITHIN_MS;
    while (!(await queryTxt(this.opts.server, name)).includes(c.keyAuthorization)) {
      if (Date.now() > deadline)
        throw new Error(`${name} TXT is not visible on ${this.opts.server.host}:${this.opts.server.port} ${VISIBLE_WITHIN_MS / 1000} s after the update`);
      await Bun.sleep(POLL_MS);
    }
  }

  async cleanUp(c: Challenge): Promise<void> {
    const name = challengeName(c.identifier);
    const k = `${name} ${c.keyAuthorization}`;
    const n = this.added.get(k) ?? 0;
    if (n === 0) return; // present failed: nothing of ours is there
    if (n === 1) this.added.delete(k);
    else this.added.set(k, n - 1);
    await deleteTxt(this.opts, name, c.keyAuthorization).catch((e) =>
      log.warn("cannot remove the dns-01 record", { site: c.site, name, error: String((e as Error).message ?? e) }),
    );
  }
}
