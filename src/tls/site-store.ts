/** Site certificates in storage: sites/NAME/{cert.pem,key.pem,meta.json}, read back and verified, written so that nothing unusable is lost. */
import { CertProblem, inspectBundle, type CertBundle } from "../lib/cert-info.ts";
import { log } from "../observability/log.ts";
import type { Storage } from "./storage.ts";

/** StoredMeta says where a stored certificate came from: "acme" (and from which directory) or "internal". */
export type StoredMeta = { readonly issuer?: string; readonly directory?: string };

/** Stored is a verified certificate from storage and its metadata. */
export type Stored = { readonly bundle: CertBundle; readonly meta: StoredMeta };

const FALLBACK = "internal-ca/fallback";

/** SiteCertStore reads and writes the certificates of sites (and the fallback certificate) in a Storage. */
export class SiteCertStore {
  constructor(readonly storage: Storage) {}

  /** load returns the site's stored certificate when it parses and its key matches; an unusable one is logged with its path and left in place. */
  async load(site: string): Promise<Stored | undefined> {
    const st = this.storage;
    let certPem: string | undefined;
    let keyPem: string | undefined;
    let metaText: string | undefined;
    try {
      [certPem, keyPem, metaText] = await Promise.all([
        st.load(`sites/${site}/cert.pem`),
        st.load(`sites/${site}/key.pem`),
        st.load(`sites/${site}/meta.json`),
      ]);
    } catch (e) {
      log.error("cannot read a stored certificate", { site, path: st.describe(`sites/${site}`), error: String((e as Error).message ?? e) });
      return undefined;
    }
    if (certPem === undefined || keyPem === undefined) return undefined;
    let bundle: CertBundle;
    try {
      bundle = inspectBundle(certPem, keyPem);
    } catch (e) {
      const why = e instanceof CertProblem ? e.message : String(e);
      log.error("stored certificate is unusable; it is left in place and a new one will be obtained", {
        site,
        path: st.describe(`sites/${site}/cert.pem`),
        problem: why,
      });
      return undefined;
    }
    let meta: StoredMeta = {};
    try {
      meta = metaText ? (JSON.parse(metaText) as StoredMeta) : {};
    } catch {
      log.warn("stored certificate metadata is unreadable; the certificate is used, its origin unknown", {
        site,
        path: st.describe(`sites/${site}/meta.json`),
      });
    }
    return { bundle, meta };
  }

  /** save stores a new certificate: files that fail verification are first kept aside as NAME.corrupt-TIME; the key is written first and 0600. */
  async save(site: string, b: CertBundle, meta: StoredMeta): Promise<void> {
    await this.keepUnusable(site);
    const st = this.storage;
    await st.store(`sites/${site}/key.pem`, b.keyPem, { secret: true });
    await st.store(`sites/${site}/cert.pem`, b.certPem);
    await st.store(
      `sites/${site}/meta.json`,
      `${JSON.stringify({ ...meta, names: b.names, not_after: new Date(b.notAfter).toISOString(), obtained: new Date().toISOString() }, null, 2)}\n`,
    );
  }

  private async keepUnusable(site: string): Promise<void> {
    const st = this.storage;
    const certPem = await st.load(`sites/${site}/cert.pem`).catch(() => undefined);
    const keyPem = await st.load(`sites/${site}/key.pem`).catch(() => undefined);
    if (certPem === undefined && keyPem === undefined) return;
    try {
      inspectBundle(certPem ?? "", keyPem ?? "");
    } catch {
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      if (certPem !== undefined) await st.store(`sites/${site}/cert.pem.corrupt-${stamp}`, certPem);
      if (keyPem !== undefined) await st.store(`sites/${site}/key.pem.corrupt-${stamp}`, keyPem, { secret: true });
      log.warn("unusable certificate files kept aside", { site, path: st.describe(`sites/${site}/cert.pem.corrupt-${stamp}`) });
    }
  }

  /**
   * loadFallback reads the stored certificate for unknown SNI names when it parses and its key matches; undefined when there is none (or it is unusable, which
   * is logged with whatNext appended).
   */
  async loadFallback(whatNext = ""): Promise<CertBundle | undefined> {
    const st = this.storage;
    const [certPem, keyPem] = await Promise.all([st.load(`${FALLBACK}.pem`), st.load(`${FALLBACK}.key`)]);
    if (!certPem || !keyPem) return undefined;
    try {
      return inspectBundle(certPem, keyPem);
    } catch (e) {
      log.warn(`stored fallback certificate is unusable${whatNext}`, { path: st.describe(`${FALLBACK}.pem`), problem: String((e as Error).message ?? e) });
      return undefined;
    }
  }

  /** fallback reads the stored certificate for unknown SNI names, or makes one with issue() and stores it; name must be on it. */
  async fallback(name: string, issue: () => Promise<CertBundle>): Promise<CertBundle> {
    const stored = await this.loadFallback("; a new one is made");
    if (stored && stored.notAfter > Date.now() + 30 * 86_400_000 && stored.names.includes(name)) return stored;
    const st = this.storage;
    const b = await issue();
    await st.store(`${FALLBACK}.key`, b.keyPem, { secret: true });
    await st.store(`${FALLBACK}.pem`, b.certPem);
    return b;
  }
}
