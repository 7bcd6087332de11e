/** Reading [acme] and [acme.dns] of config.toml into AcmeConfig. */
import { readFileSync } from "node:fs";
import { parseAddress, resolvePath } from "./locations.ts";
import type { Reader } from "./reader.ts";
import type { AcmeChallenge, AcmeConfig, TsigConfig } from "./types.ts";

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

/** readAcme reads [acme] (absent: Let's Encrypt, HTTP-01, no e-mail); dir resolves relative file paths. */
export function readAcme(r: Reader | undefined, dir: string): AcmeConfig {
  const directory = r?.string("directory") ?? LETS_ENCRYPT;
  if (r && !/^https?:\/\/[^/\s]+/.test(directory))
    r.problem("directory", `${JSON.stringify(directory)} is not an http(s) URL`, "the ACME directory URL of the CA");
  const email = r?.string("email");
  if (r && email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email))
    r.problem("email", `${JSON.stringify(email)} is not an e-mail address`, 'an address such as "ops@example.com"');
  const caFileRaw = r?.string("ca_file") || undefined;
  const caFile = caFileRaw === undefined ? undefined : resolvePath(dir, caFileRaw);
  if (r && caFile !== undefined) {
    try {
      readFileSync(caFile);
    } catch (e) {
      r.problem("ca_file", `cannot read ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "a PEM file with the CA of the ACME API");
    }
  }
  const challenge = r?.oneOf("challenge", ACME_CHALLENGES, "http-01") ?? "http-01";
  const renewFraction = r?.integer("renew_at_percent", 67, 10, 95) ?? 67;
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
  return { directory, email, caFile, challenge, dns, renewFraction: renewFraction / 100 };
}
