/** Certificate-only sites and [export]: the chain and key written for other daemons with their mode and group, the command run once per change, failures retried, hangs killed, bad keys reported by check. */
import { afterAll, expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, freePort, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { InternalCa } from "../src/tls/internal-ca.ts";
import { FileStorage } from "../src/tls/file-storage.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

const dirs: string[] = [];
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function scratch(): string {
  const d = tempDir("gatehouse-export-");
  dirs.push(d);
  return d;
}

/** hook is an [export] run line that records one line per run in log, after checking that both files are in place. */
function hook(out: string, body = 'echo ran >> "$3"'): string {
  return JSON.stringify([
    "/bin/sh",
    "-c",
    `test -s "$1" && test -s "$2" && ${body}`,
    "hook",
    join(out, "fullchain.pem"),
    join(out, "key.pem"),
    join(out, "hook.log"),
  ]);
}

/** mailSite is a certificate-only route file with an [export] into out. */
function mailSite(out: string, exportExtra: string, tls = "internal"): string {
  return `hosts = ["mail.test"]\ntls = "${tls}"\n\n[export]\ncert = "${join(out, "fullchain.pem")}"\nkey = "${join(out, "key.pem")}"\n${exportExtra}`;
}

function runs(out: string): number {
  return existsSync(join(out, "hook.log")) ? readFileSync(join(out, "hook.log"), "utf8").trim().split("\n").length : 0;
}

async function start(certs: string, route: string, opts: { https?: number } = {}): Promise<TestGateway> {
  const gw = await startGateway({
    top: `certs_dir = "${certs}"`,
    ...(opts.https ? { listenExtra: `https = "127.0.0.1:${opts.https}"` } : {}),
    routes: { mail: route },
  });
  gateways.push(gw);
  return gw;
}

type CertJson = { name: string; fingerprint_sha256: string; export: { last_result: string | null; failures: number; last_error: string | null } | null };

async function certificates(gw: TestGateway): Promise<CertJson[]> {
  return (await (await fetch(`${gw.admin}/certificates`)).json()) as CertJson[];
}

test("a certificate-only site exports chain and key (mode, group), runs its command once per change, not on a restart, again after a renewal", async () => {
  const out = scratch();
  const certs = join(scratch(), "certs");
  const gid = process.getgid!();
  const route = mailSite(out, `mode = "0640"\ngroup = "${gid}"\nrun = ${hook(out)}\n`);
  const https = freePort();
  const gw = await start(certs, route, { https });
  const ran = await gw.waitForLog((l) => l.msg === "export command ran", 10_000);
  expect(ran.exit).toBe(0);
  expect(runs(out)).toBe(1);

  // The files: mode 0640 both, the group asked for, the chain and key belong together and name the site's host.
  const chainPath = join(out, "fullchain.pem");
  const keyPath = join(out, "key.pem");
  for (const p of [chainPath, keyPath]) {
    expect((statSync(p).mode & 0o777).toString(8)).toBe("640");
    expect(statSync(p).gid).toBe(gid);
  }
  const leaf = new X509Certificate(readFileSync(chainPath));
  expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))).toBe(true);
  expect(leaf.subjectAltName).toContain("DNS:mail.test");

  // /certificates and /status list it with its export; the metrics count one write and one run.
  const [c] = await certificates(gw);
  expect(c).toMatchObject({ name: "mail", export: { last_result: "ok", failures: 0 } });
  expect(c!.fingerprint_sha256).toBe(leaf.fingerprint256);
  expect(await gw.metric('gatehouse_certificate_exports_total{name="mail",result="written"}')).toBe("1");
  expect(await gw.metric('gatehouse_certificate_export_runs_total{name="mail",result="success"}')).toBe("1");
  expect(await gw.metric('gatehouse_certificate_export_current{name="mail"}')).toBe("1");
  const status = await (await fetch(`${gw.admin}/status`)).text();
  expect(status).toContain("certificate only, serves no HTTP");
  expect(status).toContain("exported");

  // It serves no HTTP: its host gets what an unknown host gets (404 in plain HTTP, 421 over TLS, where its certificate may be presented).
  expect((await gw.request("mail.test", "/")).status).toBe(404);
  const overTls = await tlsGet(https, "mail.test", "mail.test");
  expect(overTls.status).toBe(421);

  // A restart with the same storage finds the files current: no write, no run.
  await gw.stop();
  const gw2 = await start(certs, route, { https: freePort() });
  await gw2.waitForLog((l) => l.msg === "exported certificate is current", 10_000);
  expect(await gw2.metric('gatehouse_certificate_exports_total{name="mail",result="unchanged"}')).toBe("1");
  expect(await gw2.metric('gatehouse_certificate_exports_total{name="mail",result="written"}')).toBeUndefined();
  await Bun.sleep(300);
  expect(runs(out)).toBe(1);

  // A forced renewal writes the new certificate and runs the command once more.
  const seen = gw2.logs.length;
  expect((await fetch(`${gw2.admin}/certificates/mail/renew`, { method: "POST" })).status).toBe(202);
  await gw2.waitForLog((l) => l.msg === "export command ran", 10_000, seen);
  expect(runs(out)).toBe(2);
  const renewed = new X509Certificate(readFileSync(chainPath));
  expect(renewed.fingerprint256).not.toBe(leaf.fingerprint256);
  expect(renewed.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))).toBe(true);
  expect((await certificates(gw2))[0]!.fingerprint_sha256).toBe(renewed.fingerprint256);
}, 60_000);

test("without a mode the key is 0600 and the chain 0644; a certificate-only site needs no HTTPS listener", async () => {
  const out = scratch();
  const gw = await start(join(scratch(), "certs"), mailSite(out, ""));
  await gw.waitForLog((l) => l.msg === "certificate exported", 10_000);
  expect((statSync(join(out, "key.pem")).mode & 0o777).toString(8)).toBe("600");
  expect((statSync(join(out, "fullchain.pem")).mode & 0o777).toString(8)).toBe("644");
}, 30_000);

test("with workers = 2 the supervisor exports, once; the workers never do", async () => {
  const out = scratch();
  const gw = await startGateway({ top: `workers = 2\ncerts_dir = "${join(scratch(), "certs")}"`, routes: { mail: mailSite(out, `run = ${hook(out)}\n`) } });
  gateways.push(gw);
  const ran = await gw.waitForLog((l) => l.msg === "export command ran", 15_000);
  expect(ran.worker).toBeUndefined();
  await Bun.sleep(1000);
  expect(runs(out)).toBe(1);
  expect(gw.logs.filter((l) => l.msg === "certificate exported")).toHaveLength(1);
  expect(await gw.metric('gatehouse_certificate_export_runs_total{name="mail",result="success"}')).toBe("1");
}, 30_000);

test("a failing command is logged with its exit status and output, counted, shown in /certificates, and retried until it succeeds", async () => {
  const out = scratch();
  const flag = join(out, "second-time");
  const body = `echo ran >> "$3"; if [ -e "${flag}" ]; then exit 0; fi; touch "${flag}"; echo "reload refused" >&2; exit 1`;
  const gw = await start(join(scratch(), "certs"), mailSite(out, `run = ${hook(out, body)}\n`));
  const failed = await gw.waitForLog((l) => l.msg === "certificate export failed; retrying", 10_000);
  expect(failed.exit).toBe(1);
  expect(String(failed.output)).toContain("reload refused");
  expect(failed.retry_in_s as number).toBeGreaterThanOrEqual(4);
  expect(await gw.metric('gatehouse_certificate_export_runs_total{name="mail",result="failure"}')).toBe("1");
  expect(await gw.metric('gatehouse_certificate_export_current{name="mail"}')).toBe("0");
  const [c] = await certificates(gw);
  expect(c!.export).toMatchObject({ last_result: "failure", failures: 1 });
  expect(c!.export!.last_error).toContain("exit status 1");
  expect(await (await fetch(`${gw.admin}/status`)).text()).toContain("1 failure");

  // The retry runs the command again (the files already hold the certificate) and succeeds.
  await gw.waitForLog((l) => l.msg === "export command ran", 10_000);
  expect(runs(out)).toBe(2);
  expect(await gw.metric('gatehouse_certificate_export_runs_total{name="mail",result="success"}')).toBe("1");
  expect(await gw.metric('gatehouse_certificate_export_current{name="mail"}')).toBe("1");
}, 30_000);

test("a command that hangs is killed at its timeout, with what it started", async () => {
  const out = scratch();
  const marker = `${10_000 + Math.floor(Math.random() * 80_000)}.25`;
  const body = `echo ran >> "$3"; sleep ${marker} & wait`;
  const gw = await start(join(scratch(), "certs"), mailSite(out, `run = ${hook(out, body)}\ntimeout = "1s"\n`));
  const failed = await gw.waitForLog((l) => l.msg === "certificate export failed; retrying", 10_000);
  expect(failed.signal).toBe("SIGTERM");
  expect(failed.ms as number).toBeGreaterThanOrEqual(900);
  expect(failed.ms as number).toBeLessThan(4000);
  expect(await gw.metric('gatehouse_certificate_export_runs_total{name="mail",result="timeout"}')).toBe("1");
  // Its child went with it: no `sleep` of ours is left.
  const ps = Bun.spawnSync(["ps", "-eo", "args"]).stdout.toString();
  expect(ps).not.toContain(`sleep ${marker}`);
}, 30_000);

test("a command still running when gatehouse stops is ended with it, with what it started (nothing is left running after the gateway)", async () => {
  const out = scratch();
  const marker = `${10_000 + Math.floor(Math.random() * 80_000)}.75`;
  const gw = await start(join(scratch(), "certs"), mailSite(out, `run = ${hook(out, `echo ran >> "$3"; sleep ${marker} & wait`)}\ntimeout = "60s"\n`));
  const end = performance.now() + 10_000;
  while (runs(out) === 0 && performance.now() < end) await Bun.sleep(20);
  expect(runs(out)).toBe(1);
  expect(await gw.stop()).toBe(0);
  const left = () => Bun.spawnSync(["ps", "-eo", "args"]).stdout.toString().includes(`sleep ${marker}`);
  const gone = performance.now() + 3000;
  while (left() && performance.now() < gone) await Bun.sleep(50);
  expect(left()).toBe(false);
}, 30_000);

test("an expired certificate is never exported: refused, logged and counted; the files and the command stay untouched", async () => {
  const out = scratch();
  const src = scratch();
  const ca = await InternalCa.open(new FileStorage(join(src, "ca")));
  const { certPem, keyPem } = await ca.issue(["mail.test"], 1000);
  writeFileSync(join(src, "cert.pem"), certPem);
  writeFileSync(join(src, "key.pem"), keyPem);
  await Bun.sleep(1200);
  const route = mailSite(out, `run = ${hook(out)}\n`, "manual").replace(
    "\n\n[export]",
    `\ncert = "${join(src, "cert.pem")}"\nkey = "${join(src, "key.pem")}"\n\n[export]`,
  );
  const gw = await start(join(scratch(), "certs"), route, { https: freePort() });
  const refused = await gw.waitForLog((l) => l.msg === "certificate not exported: it fails verification", 10_000);
  expect(String(refused.problem)).toContain("expired");
  expect(await gw.metric('gatehouse_certificate_exports_total{name="mail",result="refused"}')).toBe("1");
  expect(await gw.metric('gatehouse_certificate_export_current{name="mail"}')).toBe("0");
  expect((await certificates(gw))[0]!.export).toMatchObject({ last_result: "refused" });
  expect(existsSync(join(out, "fullchain.pem")) || existsSync(join(out, "key.pem"))).toBe(false);
  expect(runs(out)).toBe(0);
}, 30_000);

test("check reports every bad [export] key as FILE:LINE: key: problem (expected …)", () => {
  const dir = scratch();
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "config.toml"), '[listen]\nhttp = "127.0.0.1:8080"\n');
  const route = [
    'hosts = ["mail.test"]',
    'tls = "internal"',
    "[export]",
    'cert = "no/such/dir/fullchain.pem"',
    'key = "/etc/ssl/mail-key.pem"',
    'mode = "rw-r-----"',
    'group = "no-such-group-gatehouse"',
    'run = "systemctl reload postfix"',
    'timeout = "soon"',
  ].join("\n");
  writeFileSync(join(dir, "routes", "mail.toml"), route);
  writeFileSync(join(dir, "routes", "web.toml"), 'hosts = ["web.test"]\n[export]\ncert = "/tmp/c.pem"\nkey = "/tmp/k.pem"\nmode = "0644"\nrun = []\n');
  writeFileSync(join(dir, "routes", "idle.toml"), 'hosts = ["idle.test"]\n');
  const r = Bun.spawnSync([BUN, MAIN, "check", "-c", "config.toml"], { cwd: dir });
  expect(r.exitCode).toBe(1);
  const lines = r.stderr.toString().trim().split("\n");
  expect(lines).toEqual([
    'routes/idle.toml: the site does nothing (expected one of upstreams, static, redirect, or [[paths]] entries; or tls = "acme", "internal" or "manual" for a certificate only)',
    `routes/mail.toml:4: export.cert: directory ${join(dir, "no/such/dir")} does not exist (expected a file path in an existing directory (relative paths start at the directory of config.toml))`,
    'routes/mail.toml:6: export.mode: "rw-r-----" is not an octal file mode (expected an octal string such as "0640")',
    'routes/mail.toml:7: export.group: group "no-such-group-gatehouse" is not known to this system (expected a group name this system knows (getent group NAME), or a group number such as "110")',
    'routes/mail.toml:8: export.run: got the string "systemctl reload postfix" (expected the command as an array of strings, program first, no shell: ["systemctl", "reload", "postfix", "dovecot"])',
    'routes/mail.toml:9: export.timeout: cannot read "soon" as a duration (expected a duration such as "500ms", "30s", "5m" or "1h")',
    'routes/web.toml:2: export: needs a certificate to export (tls is "off") (expected tls = "acme", "internal" or "manual")',
    'routes/web.toml:5: export.mode: "0644" lets every user read the private key (expected a mode without permissions for others, such as "0640" or "0600")',
    'routes/web.toml:6: export.run: is empty (expected the command as an array of strings, program first, no shell: ["systemctl", "reload", "postfix", "dovecot"])',
  ]);
});

test('with tls = "acme" a certificate-only site gets its certificate from the CA (its HTTP-01 challenge answered) and exports it once', async () => {
  const http01Port = freePort();
  const tb = Testbed.start({ http01Port });
  try {
    const out = scratch();
    const acme = `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@mail.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`;
    const gw = await startGateway({ httpPort: http01Port, extra: acme, routes: { mail: mailSite(out, `mode = "0640"\nrun = ${hook(out)}\n`, "acme") } });
    gateways.push(gw);
    const obtained = await gw.waitForLog((l) => l.msg === "certificate obtained", 30_000);
    expect(obtained.names).toEqual(["mail.test"]);
    await gw.waitForLog((l) => l.msg === "export command ran", 10_000);
    await Bun.sleep(300);
    expect(runs(out)).toBe(1);
    // The CA fetched its token over plain HTTP, answered although the site serves no HTTP; any other path of its host is unknown.
    expect(gw.accessLogs().some((l) => l.route === "acme-challenge" && l.status === 200)).toBe(true);
    expect((await gw.request("mail.test", "/")).status).toBe(404);
    const chain = readFileSync(join(out, "fullchain.pem"), "utf8");
    const leaf = new X509Certificate(chain);
    expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(join(out, "key.pem"))))).toBe(true);
    expect(leaf.subjectAltName).toBe("DNS:mail.test");
    // The chain leads to the CA's root: its last certificate is signed by it.
    const pems = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    expect(new X509Certificate(pems.at(-1)!).verify(new X509Certificate(readFileSync(tb.env.ACME_ISSUER_ROOT)).publicKey)).toBe(true);
    for (const f of ["fullchain.pem", "key.pem"]) expect((statSync(join(out, f)).mode & 0o777).toString(8)).toBe("640");
  } finally {
    tb.stop();
  }
}, 90_000);

test("a reload that fixes a failing command (same files, another run) runs the command still owed, at once", async () => {
  const out = scratch();
  const gw = await start(join(scratch(), "certs"), mailSite(out, `run = ${JSON.stringify(["/bin/sh", "-c", "exit 3"])}\n`));
  await gw.waitForLog((l) => l.msg === "certificate export failed; retrying", 10_000);
  expect(runs(out)).toBe(0);
  const from = gw.logs.length;
  gw.writeRoute("mail", mailSite(out, `run = ${hook(out)}\n`));
  expect((await gw.reload()).msg).toBe("config reloaded");
  await gw.waitForLog((l) => l.msg === "export command ran", 5000, from);
  expect(runs(out)).toBe(1);
  const [c] = await certificates(gw);
  expect(c!.export).toMatchObject({ last_result: "ok" });
}, 20_000);

test("a command still owed when gatehouse stops (it failed) runs after the restart, though the files are current; once it ran, a restart runs nothing", async () => {
  const out = scratch();
  const certs = join(scratch(), "certs");
  const flag = join(out, "fixed");
  // The command fails until the operator fixes what it reloads (the flag); gatehouse stops before its retry.
  const route = mailSite(out, `run = ${hook(out, `echo ran >> "$3"; test -e "${flag}"`)}\n`);
  const gw = await start(certs, route);
  await gw.waitForLog((l) => l.msg === "certificate export failed; retrying", 10_000);
  expect(runs(out)).toBe(1);
  await gw.stop();
  writeFileSync(flag, "");
  const gw2 = await start(certs, route);
  await gw2.waitForLog((l) => l.msg === "export command ran", 10_000);
  expect(runs(out)).toBe(2);
  expect(await gw2.metric('gatehouse_certificate_exports_total{name="mail",result="written"}')).toBeUndefined();
  await gw2.stop();
  const gw3 = await start(certs, route);
  await gw3.waitForLog((l) => l.msg === "exported certificate is current", 10_000);
  await Bun.sleep(300);
  expect(runs(out)).toBe(2);
}, 40_000);

test("when the chain cannot be written, the key stays the old one too: never a new key beside an old chain", async () => {
  const out = scratch();
  const chainDir = join(out, "chain");
  mkdirSync(chainDir);
  const route = `hosts = ["mail.test"]\ntls = "internal"\n\n[export]\ncert = "${join(chainDir, "fullchain.pem")}"\nkey = "${join(out, "key.pem")}"\n`;
  const certs = join(scratch(), "certs");
  const gw = await start(certs, route);
  await gw.waitForLog((l) => l.msg === "certificate exported", 10_000);
  const keyBefore = readFileSync(join(out, "key.pem"), "utf8");
  const chainBefore = readFileSync(join(chainDir, "fullchain.pem"), "utf8");
  // The chain's directory goes away (as root, a read-only mode would not stop the write): the next certificate's chain cannot be written.
  rmSync(chainDir, { recursive: true });
  try {
    const from = gw.logs.length;
    expect((await fetch(`${gw.admin}/certificates/mail/renew`, { method: "POST" })).status).toBe(202);
    await gw.waitForLog((l) => l.msg === "certificate export failed; retrying", 10_000, from);
    expect(readFileSync(join(out, "key.pem"), "utf8")).toBe(keyBefore);
    expect(new X509Certificate(chainBefore).checkPrivateKey(createPrivateKey(keyBefore))).toBe(true);
    expect(readdirSync(out).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  } finally {
    mkdirSync(chainDir, { recursive: true });
  }
}, 20_000);

test("the mode asked for is the mode the files get, whatever the process's umask (077 here)", async () => {
  const out = scratch();
  const gw = await startGateway({
    top: `certs_dir = "${join(scratch(), "certs")}"`,
    routes: { mail: mailSite(out, `mode = "0640"\n`) },
    cmd: ["/bin/sh", "-c", `umask 077 && exec "$0" "$@"`, BUN, MAIN, "run", "-c", "config.toml"],
  });
  gateways.push(gw);
  await gw.waitForLog((l) => l.msg === "certificate exported", 10_000);
  for (const f of ["fullchain.pem", "key.pem"]) expect((statSync(join(out, f)).mode & 0o777).toString(8)).toBe("640");
});
