/** Reading [acme], [acme.dns] and [[acme.fallback]] of config.toml into AcmeConfig, and the CA keys that a route file's [acme] shares with them. */
import { readFileSync } from "node:fs";
import { parseAddress, resolvePath } from "./locations.ts";
import type { Reader } from "./reader.ts";
import type { AcmeChallenge, AcmeConfig, AcmeEab, AcmeFallback, TsigConfig } from "./types.ts";

/** LETS_ENCRYPT is the default ACME directory: Let's Encrypt's production CA. */
export const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";
/** ACME_CHALLENGES are the values of `challenge` in config.toml's [acme] and in a route file's [acme]. */
export const ACME_CHALLENGES: readonly AcmeChallenge[] = ["http-01", "dns-01", "tls-alpn-01"];
const TSIG_ALGORITHMS = ["hmac-sha256", "hmac-sha512"] as const;
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

function readTsig(r: Reader, dir: string): TsigConfig | undefined {
  const name = r.requiredString("tsig_key_name", 'the TSIG key name that the DNS server knows, such as "acme-update"');
  const algorithm = r.oneOf("tsig_algorithm", TSIG_ALGORITHMS, "hmac-sha256");
  const inline = r.string("tsig_secret");
  const file = r.string("tsig_secret_file");
  let text: string | undefined;
  let key = "tsig_secret";
  if (inline !== undefined && file !== undefined) r.problem("tsig_secret_file", "cannot be combined with tsig_secret", "one of tsig_secret, tsig_secret_file");
  else if (file !== undefined) {
    key = "tsig_secret_file";
    const path = resolvePath(dir, file);
    try {
      const raw = readFileSync(path, "utf8");
      // A BIND key file ('key "n" { algorithm …; secret "…"; };') or the bare base64 secret.
      text = /secret\s+"([^"]+)"/.exec(raw)?.[1] ?? raw.trim();
    } catch (e) {
      r.problem(
        "tsig_secret_file",
        `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        "a readable file with the base64 secret, or a BIND key file",
      );
    }
  } else if (inline !== undefined) text = inline;
  else r.problem("tsig_secret", "missing", "the base64 TSIG secret (tsig_secret) or a file holding it (tsig_secret_file)");
  if (text === undefined) return undefined;
  if (!BASE64_RE.test(text)) {
    r.problem(key, "is not base64", 'the secret as tsig-keygen prints it, such as "kXo3…="');
    return undefined;
  }
  return name ? { name, algorithm, secret: new Uint8Array(Buffer.from(text, "base64")) } : undefined;
}

const DIRECTORY_EXPECTED = "the ACME directory URL of the CA";
const BASE64URL_RE = /^[A-Za-z0-9_-]+={0,2}$/;

/** CaKeys are the keys that choose a CA and the account at it, as one table sets them; each one left out is undefined. */
export type CaKeys = { directory?: string; email?: string; caFile?: string; eab?: AcmeEab };

/**
 * readCa reads directory, email, ca_file, eab_kid and eab_hmac_key from config.toml's [acme], a [[acme.fallback]] entry or a route file's [acme], with the same
 * checks everywhere; a bad value is reported and left out. dir resolves a relative ca_file; an empty ca_file means none.
 */
export function readCa(r: Reader, dir: string): CaKeys {
  const out: CaKeys = {};
  const directory = r.string("directory");
  if (directory !== undefined) {
    let url: URL | undefined;
    try {
      url = /^https?:\/\/[^/\s]+/.test(directory) ? new URL(directory) : undefined;
    } catch {
      url = undefined;
    }
    if (url) out.directory = directory;
    else r.problem("directory", `${JSON.stringify(directory)} is not an http(s) URL`, DIRECTORY_EXPECTED);
  }
  const email = r.string("email");
  if (email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email))
    r.problem("email", `${JSON.stringify(email)} is not an e-mail address`, 'an address such as "ops@example.com"');
  else if (email !== undefined) out.email = email;
  const caFileRaw = r.string("ca_file") || undefined;
  if (caFileRaw !== undefined) {
    const caFile = resolvePath(dir, caFileRaw);
    try {
      readFileSync(caFile);
      out.caFile = caFile;
    } catch (e) {
      r.problem("ca_file", `cannot read ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "a PEM file with the CA of the ACME API");
    }
  }
  // RFC 8555 §7.3.4: the CA hands out a key id and a MAC key (base64url) together; one without the other cannot bind an account.
  const kid = r.string("eab_kid");
  const hmacKey = r.string("eab_hmac_key");
  const eabExpected = "eab_kid and eab_hmac_key together, as the CA hands them out";
  if (kid === "") r.problem("eab_kid", "is empty", "the key id of the CA's External Account Binding");
  else if (kid !== undefined && hmacKey === undefined) r.problem("eab_kid", "needs eab_hmac_key", eabExpected);
  if (hmacKey !== undefined && !BASE64URL_RE.test(hmacKey))
    r.problem(
      "eab_hmac_key",
      hmacKey === "" ? "is empty" : "is not base64url",
      'the MAC key as the CA prints it, such as "zWNDZM6eQGHWpSRTPal5eIUY…" (A-Z a-z 0-9 - _)',
    );
  else if (hmacKey !== undefined && kid === undefined) r.problem("eab_hmac_key", "needs eab_kid", eabExpected);
  else if (kid && hmacKey) out.eab = { kid, hmacKey };
  return out;
}

/** readFallback reads the [[acme.fallback]] entries: each needs a directory, none may repeat [acme]'s directory or an earlier entry's. */
function readFallback(r: Reader, dir: string, primary: string): AcmeFallback[] {
  const out: AcmeFallback[] = [];
  for (const f of r.tableList("fallback")) {
    if (!f.has("directory")) f.problem("directory", "missing", `${DIRECTORY_EXPECTED} to fall back to`);
    const ca = readCa(f, dir);
    f.done();
    if (ca.directory === undefined) continue;
    if (ca.directory === primary) f.problem("directory", "is [acme]'s own directory", "another CA than acme.directory");
    else if (out.some((o) => o.directory === ca.directory)) f.problem("directory", "is listed twice", "each fallback CA once");
    else out.push({ directory: ca.directory, email: ca.email, caFile: ca.caFile, eab: ca.eab });
  }
  return out;
}

/** readAcme reads [acme] (absent: Let's Encrypt, HTTP-01, no e-mail, no fallback); dir resolves relative file paths. */
export function readAcme(r: Reader | undefined, dir: string): AcmeConfig {
  const ca = r ? readCa(r, dir) : {};
  const directory = ca.directory ?? LETS_ENCRYPT;
  const challenge = r?.oneOf("challenge", ACME_CHALLENGES, "http-01") ?? "http-01";
  const renewFraction = r?.integer("renew_at_percent", 67, 10, 95) ?? 67;
  const fallback = r ? readFallback(r, dir, directory) : [];
  let dns: AcmeConfig["dns"];
  const dnsR = r?.table("dns");
  if (dnsR) {
    const serverText = dnsR.requiredString("server", 'the DNS server that takes RFC 2136 updates, such as "127.0.0.1:53"');
    const server = serverText === undefined ? undefined : parseAddress(serverText);
    if (serverText !== undefined && !server)
      dnsR.problem("server", `cannot read ${JSON.stringify(serverText)} as an address`, 'HOST:PORT such as "127.0.0.1:53"');
    const tsig = readTsig(dnsR, dir);
    dnsR.done();
    if (server && tsig) dns = { server, tsig };
  } else if (challenge === "dns-01") r?.problem("challenge", '"dns-01" needs [acme.dns]', "an [acme.dns] table with server and the TSIG key");
  r?.done();
  return { directory, email: ca.email, caFile: ca.caFile, ...(ca.eab ? { eab: ca.eab } : {}), challenge, dns, renewFraction: renewFraction / 100, fallback };
}
