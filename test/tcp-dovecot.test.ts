/**
 * A real IMAP login through a [[tcp]] route: gatehouse terminates TLS with a certificate-only site's certificate and hands the plain stream to Debian's
 * dovecot with a PROXY v2 header, and dovecot logs the client's own address and port. Two dovecots: one that allows plain-text logins everywhere, and one
 * with dovecot's default (`disable_plaintext_auth = yes`), which lets a client behind a PROXY header log in only when the header says it came over TLS.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { DOVECOT_PASSWORD, DOVECOT_USER, ImapClient, proxyV2Header, SSL_TLV, startDovecot, type TestDovecot } from "./dovecot.ts";
import { freePort, startGateway, tempDir, type TestGateway } from "./harness.ts";

/** CLIENT is the loopback address the test's clients bind, so that dovecot can only have learnt it from a PROXY header (gatehouse connects from 127.0.0.1). */
const CLIENT = "127.0.0.2";

const dirs: string[] = [];
/** dovecot allows plain-text logins on every connection; strict keeps dovecot's default and allows them only on connections it knows to be secured. */
let dovecot: TestDovecot;
let strict: TestDovecot;
let imapsGateway: Promise<{ gw: TestGateway; imaps: number; imapsStrict: number; ca: string }> | undefined;

beforeAll(async () => {
  dirs.push(tempDir("gatehouse-dovecot-"), tempDir("gatehouse-dovecot-"));
  [dovecot, strict] = await Promise.all([startDovecot(dirs[0]!), startDovecot(dirs[1]!, { requireTls: true })]);
});

afterAll(async () => {
  await (await imapsGateway?.catch(() => undefined))?.gw.cleanup();
  await Promise.all([dovecot?.stop(), strict?.stop()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** tcpConnect opens a plain TCP connection from localAddress to 127.0.0.1:port (at most 5 s). */
function tcpConnect(port: number, localAddress = "127.0.0.1"): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: "127.0.0.1", port, localAddress });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no TCP connection to 127.0.0.1:${port} within 5 s`));
    }, 5000);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** tlsOver starts TLS on a connected socket with SNI servername, verifying against ca (at most 5 s). */
function tlsOver(socket: Socket, servername: string, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket, servername, ca, rejectUnauthorized: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no TLS handshake for ${servername} within 5 s`));
    }, 5000);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** session logs in as the test user, selects INBOX and logs out, asserting each tagged answer. */
async function session(imap: ImapClient): Promise<void> {
  expect(await imap.greeting()).toContain("Dovecot");
  expect((await imap.command("a", `LOGIN ${DOVECOT_USER} ${DOVECOT_PASSWORD}`)).status).toStartWith("a OK");
  const select = await imap.command("b", "SELECT INBOX");
  expect(select.status).toStartWith("b OK");
  expect(select.lines).toContain("* 0 EXISTS");
  const logout = await imap.command("c", "LOGOUT");
  expect(logout.lines).toContain("* BYE");
  expect(logout.status).toStartWith("c OK");
}

/** loginLine waits for a dovecot's login line of a session that came from rip:rport. */
function loginLine(rip: string, rport: number, server = dovecot): Promise<string> {
  return server.waitForLog(new RegExp(`imap-login: Info: Login: user=<${DOVECOT_USER}>, method=PLAIN, rip=${rip.replaceAll(".", "\\.")}, rport=${rport},`));
}

test("the dovecot harness: a plain login on its IMAP port; on its haproxy port the address of a hand-written PROXY v2 header, and no greeting without one", async () => {
  const plain = await tcpConnect(dovecot.port, CLIENT);
  await session(new ImapClient(plain));
  expect(await loginLine(CLIENT, plain.localPort!)).toContain(`lport=${dovecot.port},`);

  // A PROXY v2 header naming a documentation address (RFC 5737) that no socket here has: only the header can tell dovecot about it.
  const proxied = await tcpConnect(dovecot.haproxyPort);
  proxied.write(proxyV2Header("203.0.113.9", 40123, "192.0.2.1", 993));
  await session(new ImapClient(proxied));
  expect(await loginLine("203.0.113.9", 40123)).toContain("lip=192.0.2.1, lport=993,");

  // Without a header the haproxy listener says nothing: it waits for one (haproxy_timeout), so a client there cannot log in.
  const bare = new ImapClient(await tcpConnect(dovecot.haproxyPort));
  await expect(bare.greeting(1000)).rejects.toThrow(/no IMAP line/);
  bare.close();
}, 30_000);

test("the strict dovecot: behind a PROXY v2 header a LOGIN needs the header's PP2_TYPE_SSL TLV (PRIVACYREQUIRED without it)", async () => {
  const plain = await tcpConnect(strict.haproxyPort);
  plain.write(proxyV2Header("203.0.113.10", 40124, "192.0.2.1", 993));
  const refused = new ImapClient(plain);
  expect(await refused.greeting()).toContain("LOGINDISABLED");
  expect((await refused.command("a", `LOGIN ${DOVECOT_USER} ${DOVECOT_PASSWORD}`)).status).toStartWith("a NO [PRIVACYREQUIRED]");
  refused.close();

  const tls = await tcpConnect(strict.haproxyPort);
  tls.write(proxyV2Header("203.0.113.11", 40125, "192.0.2.1", 993, SSL_TLV));
  await session(new ImapClient(tls));
  expect(await loginLine("203.0.113.11", 40125, strict)).toMatch(/ secured, /);
}, 30_000);

/** gateway starts (once) a gatehouse with a certificate-only site mail.test and two IMAPS routes: imaps to the permissive dovecot, imaps-strict to the strict one. */
function gateway(): Promise<{ gw: TestGateway; imaps: number; imapsStrict: number; ca: string }> {
  imapsGateway ??= (async () => {
    const imaps = freePort();
    const imapsStrict = freePort();
    const gw = await startGateway({
      routes: { mail: 'hosts = ["mail.test"]\ntls = "internal"\n' },
      extra: `[[tcp]]
name = "imaps"
listen = "127.0.0.1:${imaps}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${dovecot.haproxyPort}"]
send_proxy_protocol = 2

[[tcp]]
name = "imaps-strict"
listen = "127.0.0.1:${imapsStrict}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${strict.haproxyPort}"]
send_proxy_protocol = 2
`,
    });
    return { gw, imaps, imapsStrict, ca: readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8") };
  })();
  return imapsGateway;
}

test("IMAPS through a terminating [[tcp]] route: the certificate of a certificate-only site, a login at dovecot, which logs the client's address and port from gatehouse's PROXY v2", async () => {
  const { imaps, ca } = await gateway();
  // The client binds 127.0.0.2; gatehouse's own connection to dovecot comes from 127.0.0.1.
  const tcp = await tcpConnect(imaps, CLIENT);
  const tls = await tlsOver(tcp, "mail.test", ca);
  expect(tls.authorized).toBe(true);
  expect(tls.getPeerCertificate().subjectaltname).toContain("DNS:mail.test");
  await session(new ImapClient(tls));

  // dovecot saw the client's address and port (the header's source) and gatehouse's listener (its destination).
  const line = await loginLine(CLIENT, tcp.localPort!);
  expect(line).toContain(`lip=127.0.0.1, lport=${imaps},`);
}, 60_000);

test("IMAPS to a dovecot with its default disable_plaintext_auth = yes: gatehouse's PROXY v2 header says the client came over TLS, so the login is allowed", async () => {
  const { imapsStrict, ca } = await gateway();
  const tcp = await tcpConnect(imapsStrict, CLIENT);
  const imap = new ImapClient(await tlsOver(tcp, "mail.test", ca));
  // Without the header's SSL TLV dovecot offers LOGINDISABLED here and answers the LOGIN with NO [PRIVACYREQUIRED].
  await session(imap);
  expect(await loginLine(CLIENT, tcp.localPort!, strict)).toMatch(/ secured, /);
}, 60_000);
