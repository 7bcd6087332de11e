import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { tlsGet } from "./tls-client.ts";

const up = origin((req) => new Response(`origin saw ${new URL(req.url).pathname}`));
let gw: TestGateway;
let httpsPort: number;
let caPem: string;
const certDir = tempDir("gatehouse-manual-");

/** selfSigned makes a certificate and key for names with openssl; returns the file paths. */
function selfSigned(name: string, names: string[]): { cert: string; key: string } {
  const cert = join(certDir, `${name}.pem`);
  const key = join(certDir, `${name}.key`);
  const r = Bun.spawnSync([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "30",
    "-keyout",
    key,
    "-out",
    cert,
    "-subj",
    `/CN=${names[0]}`,
    "-addext",
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`,
  ]);
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return { cert, key };
}

const manual = selfSigned("manual", ["manual.test"]);

beforeAll(async () => {
  httpsPort = freePort();
  gw = await startGateway({
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    routes: {
      secure: `hosts = ["secure.test", "*.wild.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${up.port}"]\n[hsts]\nmax_age = "1h"\ninclude_subdomains = true\n`,
      plain: `hosts = ["plain.test"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`,
      manual: `hosts = ["manual.test"]\ntls = "manual"\ncert = "${manual.cert}"\nkey = "${manual.key}"\nstatic = "builtin:welcome"\n`,
    },
  });
  caPem = readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8");
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
});

test("an internal site is served over HTTPS with a certificate that verifies against the internal CA, whose path is logged", async () => {
  const res = await tlsGet(httpsPort, "secure.test", "secure.test", "/hello", caPem);
  expect(res.authorizationError).toBeUndefined();
  expect(res.authorized).toBe(true);
  expect(res.status).toBe(200);
  expect(res.body).toBe("origin saw /hello");
  expect(res.cert.subjectaltname).toContain("DNS:secure.test");
  const line = gw.logs.find((l) => l.msg.startsWith("internal CA ready"));
  expect(line?.ca_cert).toBe(join(gw.dir, "certs/internal-ca/ca.pem"));
});

test("a wildcard host gets the site's certificate for any one label", async () => {
  const res = await tlsGet(httpsPort, "a.wild.test", "a.wild.test", "/", caPem);
  expect(res.authorized).toBe(true);
  expect(res.status).toBe(200);
});

test("keys are stored 0600 in certs/, with the chain and metadata beside them", () => {
  const dir = join(gw.dir, "certs/sites/secure");
  expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
  expect(statSync(join(gw.dir, "certs/internal-ca/ca.key")).mode & 0o777).toBe(0o600);
  expect(readFileSync(join(dir, "cert.pem"), "utf8")).toContain("BEGIN CERTIFICATE");
  expect(JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")).names).toEqual(["secure.test", "*.wild.test"]);
});

test("an unknown or missing SNI name gets the fallback certificate, never a site's, and the request gets 421", async () => {
  for (const sni of ["unknown.test", undefined]) {
    const res = await tlsGet(httpsPort, sni, "unknown.test");
    expect(res.cert.subjectaltname).toBe("DNS:gatehouse.invalid");
    expect(res.status).toBe(421);
  }
});

test("a Host of a site without TLS gets 421 on the HTTPS listener", async () => {
  const res = await tlsGet(httpsPort, "secure.test", "plain.test");
  expect(res.status).toBe(421);
});

test("HSTS is sent over HTTPS only", async () => {
  const res = await tlsGet(httpsPort, "secure.test", "secure.test", "/", caPem);
  expect(res.headers["strict-transport-security"]).toBe("max-age=3600; includeSubDomains");
  const plain = await gw.request("plain.test");
  expect(plain.headers.get("strict-transport-security")).toBeNull();
  const redirect = await gw.request("secure.test");
  expect(redirect.status).toBe(308);
  expect(redirect.headers.get("strict-transport-security")).toBeNull();
});

test("plain HTTP to a TLS site redirects with 308, keeping path and query; ACME challenge paths that are not ours reach the site; a site without TLS is served", async () => {
  const res = await gw.request("secure.test", "/a/b?x=1");
  expect(res.status).toBe(308);
  expect(res.headers.get("location")).toBe(`https://secure.test:${httpsPort}/a/b?x=1`);
  const v6 = await gw.request("[::1]:80", "/");
  expect(v6.status).toBe(404);
  for (const host of ["secure.test", "plain.test"]) {
    const challenge = await gw.request(host, "/.well-known/acme-challenge/their-token");
    expect(challenge.status).toBe(200);
    expect(await challenge.text()).toBe("origin saw /.well-known/acme-challenge/their-token");
  }
  expect((await gw.request("plain.test", "/x")).status).toBe(200);
});

test("public_https_port names the port clients reach HTTPS on in redirects (behind a port forward)", async () => {
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${freePort()}"\npublic_https_port = 443`,
    routes: { r: `hosts = ["r.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` },
  });
  try {
    expect((await g.request("r.test", "/p?q")).headers.get("location")).toBe("https://r.test/p?q");
  } finally {
    await g.cleanup();
  }
});

test("a manual certificate is served for its site", async () => {
  const res = await tlsGet(httpsPort, "manual.test", "manual.test", "/", readFileSync(manual.cert, "utf8"));
  expect(res.authorized).toBe(true);
  expect(res.status).toBe(200);
});

test("a broken manual certificate is rejected on reload, naming the file and key, and the old one keeps serving; a good replacement is picked up by SIGHUP", async () => {
  const before = await tlsGet(httpsPort, "manual.test", "manual.test");

  const good = readFileSync(manual.cert, "utf8");
  writeFileSync(manual.cert, "not a certificate\n");
  const rejected = await gw.reload();
  expect(rejected.msg).toStartWith("config rejected");
  expect(JSON.stringify(rejected.problems)).toContain("manual.toml:3: cert:");
  expect((await tlsGet(httpsPort, "manual.test", "manual.test")).cert.fingerprint256).toBe(before.cert.fingerprint256);

  writeFileSync(manual.cert, good);
  const other = selfSigned("manual2", ["manual.test"]);
  writeFileSync(manual.cert, readFileSync(other.cert));
  writeFileSync(manual.key, readFileSync(other.key));
  expect((await gw.reload()).msg).toBe("config reloaded");
  await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates");
  const after = await tlsGet(httpsPort, "manual.test", "manual.test");
  expect(after.cert.fingerprint256).not.toBe(before.cert.fingerprint256);
});

test("a restart reuses the stored certificates", async () => {
  const first = await tlsGet(httpsPort, "secure.test", "secure.test");
  const fallback = await tlsGet(httpsPort, "unknown.test", "unknown.test");
  const gw2 = await startGateway({
    listenExtra: `https = "127.0.0.1:${freePort()}"`,
    top: `certs_dir = "${join(gw.dir, "certs")}"`,
    routes: { secure: `hosts = ["secure.test", "*.wild.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` },
  });
  try {
    const port = Number(/https = "127.0.0.1:(\d+)"/.exec(readFileSync(join(gw2.dir, "config.toml"), "utf8"))![1]);
    const again = await tlsGet(port, "secure.test", "secure.test");
    expect(again.cert.fingerprint256).toBe(first.cert.fingerprint256);
    expect((await tlsGet(port, "unknown.test", "unknown.test")).cert.fingerprint256).toBe(fallback.cert.fingerprint256);
    expect(gw2.logs.some((l) => l.msg === "certificate obtained")).toBe(false);
  } finally {
    await gw2.cleanup();
  }
});

test("a corrupt stored certificate is reported, kept on disk, and replaced by a new one", async () => {
  const dir = tempDir("gatehouse-corrupt-");
  mkdirSync(join(dir, "sites/secure"), { recursive: true });
  writeFileSync(join(dir, "sites/secure/cert.pem"), "garbage\n");
  writeFileSync(join(dir, "sites/secure/key.pem"), "garbage\n");
  const port = freePort();
  const gw3 = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"`,
    top: `certs_dir = "${dir}"`,
    routes: { secure: `hosts = ["secure.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` },
  });
  try {
    const line = gw3.logs.find((l) => l.msg.startsWith("stored certificate is unusable"));
    expect(line?.path).toBe(join(dir, "sites/secure/cert.pem"));
    expect((await tlsGet(port, "secure.test", "secure.test")).status).toBe(200);
    const kept = await Array.fromAsync(new Bun.Glob("sites/secure/cert.pem.corrupt-*").scan(dir));
    expect(kept.length).toBe(1);
    expect(readFileSync(join(dir, kept[0]!), "utf8")).toBe("garbage\n");
    expect(existsSync(join(dir, "sites/secure/key.pem"))).toBe(true);
  } finally {
    await gw3.cleanup();
  }
});

test("TLS 1.2 is the minimum: a TLS 1.1 handshake is refused, 1.2 and 1.3 succeed", async () => {
  const { connect } = await import("node:tls");
  const hello = (minVersion: "TLSv1" | "TLSv1.2" | "TLSv1.3", maxVersion: "TLSv1.1" | "TLSv1.2" | "TLSv1.3") =>
    new Promise<string>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: httpsPort, servername: "secure.test", rejectUnauthorized: false, minVersion, maxVersion }, () => {
        resolve(s.getProtocol() ?? "?");
        s.destroy();
      });
      s.on("error", (e) => resolve(`refused: ${e.message}`));
    });
  expect(await hello("TLSv1", "TLSv1.1")).toStartWith("refused");
  expect(await hello("TLSv1.2", "TLSv1.2")).toBe("TLSv1.2");
  expect(await hello("TLSv1.3", "TLSv1.3")).toBe("TLSv1.3");
});

test("listen.http2 = true negotiates HTTP/2 by ALPN, and HTTP/1.1 clients keep working on the same listener", async () => {
  const port = freePort();
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"\nhttp2 = true`,
    routes: { secure: `hosts = ["h2.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    // Asynchronous: the origin runs in this process and must keep answering while curl waits.
    const curl = (flag: string) =>
      new Response(
        Bun.spawn([
          "curl",
          "-sk",
          "--max-time",
          "5",
          flag,
          "--resolve",
          `h2.test:${port}:127.0.0.1`,
          "-w",
          "\n%{http_version} %{http_code}",
          `https://h2.test:${port}/via-h2`,
        ]).stdout,
      ).text();
    expect(await curl("--http2")).toBe("origin saw /via-h2\n2 200");
    expect(await curl("--http1.1")).toBe("origin saw /via-h2\n1.1 200");
  } finally {
    await g.cleanup();
  }
});

test("20 certificate changes under load, keep-alive and a new TLS connection per request: no refused, reset or failed request, no listener replaced", async () => {
  let ok = 0;
  const errors: string[] = [];
  let stop = false;
  const worker = (keepalive: boolean) => async () => {
    while (!stop) {
      try {
        const r = await fetch(`https://127.0.0.1:${httpsPort}/swap`, {
          keepalive,
          headers: { host: "secure.test" },
          tls: { ca: caPem, serverName: "secure.test" },
        });
        if (r.status === 200 && (await r.text()) === "origin saw /swap") ok++;
        else errors.push(`status ${r.status}`);
      } catch (e) {
        errors.push(`${keepalive ? "keep-alive" : "new-conn"}: ${String(e).slice(0, 40)}`);
      }
    }
  };
  const load = Promise.all([...Array.from({ length: 4 }, worker(true)), ...Array.from({ length: 4 }, worker(false))]);
  const updates = Number((await (await fetch(`${gw.admin}/metrics`)).text()).match(/^gatehouse_tls_certificate_updates_total (\d+)/m)?.[1] ?? 0);
  for (let i = 0; i < 20; i++) {
    const from = gw.logs.length;
    expect((await fetch(`${gw.admin}/certificates/secure/renew`, { method: "POST" })).status).toBe(202);
    await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates", 5000, from);
    await Bun.sleep(50);
  }
  stop = true;
  await load;
  console.log(`20 certificate changes: ${ok} requests, ${errors.length} failed ${[...new Set(errors)].join("; ")}`);
  // The certificates change in place (no listener is replaced): nothing is reset, whatever tcp_migrate_req says.
  expect(errors).toEqual([]);
  expect(ok).toBeGreaterThan(200);
  const after = Number((await (await fetch(`${gw.admin}/metrics`)).text()).match(/^gatehouse_tls_certificate_updates_total (\d+)/m)?.[1]);
  expect(after - updates).toBe(20);
});

test("a second gatehouse cannot share the HTTPS port (SO_REUSEPORT is only for our own swaps)", async () => {
  await expect(
    startGateway({ listenExtra: `https = "127.0.0.1:${httpsPort}"`, routes: { s: `hosts = ["s.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` } }),
  ).rejects.toThrow(`listen.https 127.0.0.1:${httpsPort}: cannot bind, the address is in use`);
  expect((await tlsGet(httpsPort, "secure.test", "secure.test", "/", caPem)).status).toBe(200);
});

test("SIGHUP adopts a newer certificate found in storage (obtained by another node, restored by hand)", async () => {
  const { InternalCa } = await import("../src/tls/internal-ca.ts");
  const { FileStorage } = await import("../src/tls/file-storage.ts");
  const { SiteCertStore } = await import("../src/tls/site-store.ts");
  const { inspectBundle } = await import("../src/lib/cert-info.ts");
  const storage = new FileStorage(join(gw.dir, "certs"));
  await Bun.sleep(1100); // a later notAfter than the served one, at one-second resolution
  const issued = await (await InternalCa.open(storage)).issue(["secure.test", "*.wild.test"]);
  const b = inspectBundle(issued.certPem, issued.keyPem);
  await new SiteCertStore(storage).save("secure", b, { issuer: "internal" });
  const from = gw.logs.length;
  expect((await gw.reload()).msg).toBe("config reloaded");
  await gw.waitForLog((l) => l.msg === "newer stored certificate adopted", 2000, from);
  const served = await tlsGet(httpsPort, "secure.test", "secure.test", "/", caPem);
  expect(served.cert.fingerprint256).toBe(b.fingerprint);
});

test("a reload rejected after certificates were prepared (a listener cannot bind) changes no certificate", async () => {
  const port = freePort();
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"`,
    routes: {
      a: `hosts = ["a.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n`,
      b: `hosts = ["b.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n`,
    },
  });
  const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const before = await tlsGet(port, "b.test", "b.test");
    g.removeRoute("b");
    const cfg = join(g.dir, "config.toml");
    writeFileSync(cfg, readFileSync(cfg, "utf8").replace(/^http = .*$/m, `http = "127.0.0.1:${busy.port}"`));
    expect((await g.reload()).msg).toStartWith("config rejected");
    expect((await tlsGet(port, "b.test", "b.test")).cert.fingerprint256).toBe(before.cert.fingerprint256);
    // A renewal of another site after the rejected reload still serves b.
    const from = g.logs.length;
    expect((await fetch(`${g.admin}/certificates/a/renew`, { method: "POST" })).status).toBe(202);
    await g.waitForLog((l) => l.msg === "https listener now serves the new certificates", 5000, from);
    const after = await tlsGet(port, "b.test", "b.test");
    expect(after.cert.fingerprint256).toBe(before.cert.fingerprint256);
    expect(after.status).toBe(200);
  } finally {
    busy.stop(true);
    await g.cleanup();
  }
});

test("a stored certificate from another issuer is replaced at once (e.g. after switching tls mode or CA)", async () => {
  const certs = tempDir("gatehouse-switch-");
  const port = freePort();
  const site = { s: `hosts = ["switch.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` };
  const g1 = await startGateway({ top: `certs_dir = "${certs}"`, listenExtra: `https = "127.0.0.1:${port}"`, routes: site });
  const first = await tlsGet(port, "switch.test", "switch.test");
  await g1.cleanup();
  const meta = join(certs, "sites/s/meta.json");
  writeFileSync(meta, JSON.stringify({ ...JSON.parse(readFileSync(meta, "utf8")), issuer: "acme", directory: "https://ca.example/dir" }));
  const g2 = await startGateway({ top: `certs_dir = "${certs}"`, listenExtra: `https = "127.0.0.1:${port}"`, routes: site });
  try {
    expect(g2.logs.some((l) => l.msg === "certificate obtained" && l.site === "s")).toBe(true);
    expect((await tlsGet(port, "switch.test", "switch.test")).cert.fingerprint256).not.toBe(first.cert.fingerprint256);
  } finally {
    await g2.cleanup();
  }
});
