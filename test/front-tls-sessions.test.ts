/** Certificates changed in place on the raw TLS front end: TLS sessions of unchanged certificates keep resuming across another site's renewal, a renewed site's do not, and renewals under TLS load fail no request and replace no listener. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { copyFileSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, startGateway, type TestGateway, tempDir } from "./harness.ts";
import { TlsConn } from "./tls-client.ts";

const up = origin((req) => new Response(`origin saw ${new URL(req.url).pathname}`));
let gw: TestGateway;
let port: number;
let caPem: string;
const sessions = tempDir("gatehouse-sessions-");

beforeAll(async () => {
  port = freePort();
  gw = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"`,
    routes: {
      a: `hosts = ["a.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${up.port}"]\n`,
      b: `hosts = ["b.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${up.port}"]\n`,
    },
  });
  caPem = readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8");
});

afterAll(async () => {
  await gw?.cleanup();
  up.stop(true);
  rmSync(sessions, { recursive: true, force: true });
});

/** metric reads an unlabelled counter from the admin listener's /metrics. */
/** counter is a counter's value (0 before it counted anything). */
const counter = async (name: string) => Number((await gw.metric(name)) ?? 0);

/** renew renews a site's certificate through the admin API and waits until the HTTPS listener serves it. */
async function renew(site: string): Promise<void> {
  const from = gw.logs.length;
  expect((await fetch(`${gw.admin}/certificates/${site}/renew`, { method: "POST" })).status).toBe(202);
  await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates", 5000, from);
}

type Handshake = { kind: "New" | "Reused" | "?"; version: string; fingerprint: string | undefined; answered: boolean; out: string };

/**
 * handshake runs openssl s_client for name with one request (Connection: close); with -ign_eof it reads until the gateway closes, so a TLS 1.3 ticket (sent
 * after the handshake) is read whatever the timing; it saves the session to `out` and offers the one in `resume`. Bounded at 8 s.
 */
async function handshake(name: string, version: "-tls1_2" | "-tls1_3", files: { out?: string; resume?: string }): Promise<Handshake> {
  const args = ["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", name, version, "-ign_eof"];
  if (files.out) args.push("-sess_out", join(sessions, files.out));
  if (files.resume) args.push("-sess_in", join(sessions, files.resume));
  const p = Bun.spawn(args, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => p.kill(), 8000);
  p.stdin.write(`GET /s HTTP/1.1\r\nHost: ${name}\r\nConnection: close\r\n\r\n`);
  await p.stdin.end();
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  clearTimeout(killer);
  const out = stdout + stderr;
  const m = /^(New|Reused), (TLSv1\.[23])/m.exec(out);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
  return {
    kind: (m?.[1] as "New" | "Reused" | undefined) ?? "?",
    version: m?.[2] ?? "?",
    fingerprint: pem === undefined ? undefined : new X509Certificate(pem).fingerprint256,
    answered: out.includes("HTTP/1.1 200 OK") && out.includes("origin saw /s"),
    out,
  };
}

/** served is the fingerprint of the certificate a fresh node:tls handshake for name gets (verified against the internal CA). */
async function served(name: string): Promise<string> {
  const c = await TlsConn.open(port, name, caPem);
  try {
    expect(c.authorized).toBe(true);
    return c.cert.fingerprint256;
  } finally {
    c.close();
  }
}

test("TLS 1.3 and 1.2 sessions of b.test resume across a renewal of a.test; after b.test's own renewal they make a full handshake with the new certificate, and new sessions resume again", async () => {
  const versions = [
    ["-tls1_3", "TLSv1.3"],
    ["-tls1_2", "TLSv1.2"],
  ] as const;
  const bBefore = await served("b.test");
  const aBefore = await served("a.test");
  for (const [flag, name] of versions) {
    const first = await handshake("b.test", flag, { out: `b${flag}` });
    expect([first.kind, first.version, first.answered, first.fingerprint]).toEqual(["New", name, true, bBefore]);
    // The session resumes at all (else the checks below would prove nothing); a copy is kept for after the renewal.
    copyFileSync(join(sessions, `b${flag}`), join(sessions, `b${flag}-2`));
    const again = await handshake("b.test", flag, { resume: `b${flag}` });
    expect([again.kind, again.version, again.answered]).toEqual(["Reused", name, true]);
  }

  const updates = await counter("gatehouse_tls_certificate_updates_total");
  await renew("a");
  expect(await counter("gatehouse_tls_certificate_updates_total")).toBe(updates + 1);
  expect(await served("a.test")).not.toBe(aBefore);
  expect(await served("b.test")).toBe(bBefore);
  for (const [flag, name] of versions) {
    const kept = await handshake("b.test", flag, { resume: `b${flag}` });
    expect([flag, kept.kind, kept.version, kept.answered]).toEqual([flag, "Reused", name, true]);
  }

  await renew("b");
  expect(await counter("gatehouse_tls_certificate_updates_total")).toBe(updates + 2);
  const bAfter = await served("b.test");
  expect(bAfter).not.toBe(bBefore);
  for (const [flag, name] of versions) {
    const stale = await handshake("b.test", flag, { resume: `b${flag}-2`, out: `b${flag}-new` });
    expect([flag, stale.kind, stale.version, stale.answered, stale.fingerprint]).toEqual([flag, "New", name, true, bAfter]);
    const fresh = await handshake("b.test", flag, { resume: `b${flag}-new` });
    expect([flag, fresh.kind, fresh.answered]).toEqual([flag, "Reused", true]);
  }
  expect(await counter("gatehouse_tls_listener_swaps_total")).toBe(0);
});

test("5 renewals of a.test under TLS load (4 keep-alive clients, 4 with a new connection per request): no failed request, 5 updates counted, no listener replaced", async () => {
  const updates = await counter("gatehouse_tls_certificate_updates_total");
  const swaps = await counter("gatehouse_tls_listener_swaps_total");
  const logs = gw.logs.length;
  let ok = 0;
  const errors: string[] = [];
  const fingerprints = new Set<string>();
  let stop = false;
  const keepAlive = async (i: number) => {
    let c: TlsConn | undefined;
    while (!stop) {
      try {
        c ??= await TlsConn.open(port, "a.test", caPem);
        const r = await c.request("a.test", `/ka-${i}`);
        if (r.status === 200 && r.body === `origin saw /ka-${i}`) ok++;
        else errors.push(`keep-alive ${i}: status ${r.status}`);
      } catch (e) {
        errors.push(`keep-alive ${i}: ${String(e).slice(0, 60)}`);
        c?.close();
        c = undefined;
      }
    }
    c?.close();
  };
  const perRequest = async (i: number) => {
    while (!stop) {
      let c: TlsConn | undefined;
      try {
        c = await TlsConn.open(port, "a.test", caPem);
        if (!c.authorized) errors.push(`new-conn ${i}: ${c.authorizationError}`);
        fingerprints.add(c.cert.fingerprint256);
        const r = await c.request("a.test", `/nc-${i}`);
        if (r.status === 200 && r.body === `origin saw /nc-${i}`) ok++;
        else errors.push(`new-conn ${i}: status ${r.status}`);
      } catch (e) {
        errors.push(`new-conn ${i}: ${String(e).slice(0, 60)}`);
      } finally {
        c?.close();
      }
    }
  };
  const load = Promise.all([...[0, 1, 2, 3].map(keepAlive), ...[0, 1, 2, 3].map(perRequest)]);
  try {
    await Bun.sleep(200);
    for (let i = 0; i < 5; i++) {
      await renew("a");
      await Bun.sleep(400);
    }
  } finally {
    stop = true;
    await load;
  }
  expect(errors).toEqual([]);
  expect(ok).toBeGreaterThan(100);
  // New connections saw the certificates change (6 at most: the first and one per renewal).
  expect(fingerprints.size).toBeGreaterThanOrEqual(2);
  expect(await counter("gatehouse_tls_certificate_updates_total")).toBe(updates + 5);
  expect(await counter("gatehouse_tls_listener_swaps_total")).toBe(swaps);
  expect(gw.logs.slice(logs).filter((l) => l.msg === "listener closed" || l.msg === "listening")).toEqual([]);
  expect(gw.logs.slice(logs).filter((l) => l.msg === "https listener now serves the new certificates" && l.from !== "next handshake")).toEqual([]);
});

test("a reload (a site added, another site changed) keeps the HTTPS listener and its TLS contexts: TLS 1.3 and 1.2 sessions issued before it resume after it", async () => {
  const before13 = await handshake("a.test", "-tls1_3", { out: "reload13" });
  const before12 = await handshake("a.test", "-tls1_2", { out: "reload12" });
  expect([before13.kind, before12.kind]).toEqual(["New", "New"]);
  gw.writeRoute("c", `hosts = ["c.test"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`);
  gw.writeRoute("b", `hosts = ["b.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${up.port}"]\nhttps_redirect = false\n`);
  const line = await gw.reload();
  expect(line.msg).toBe("config reloaded");
  const after13 = await handshake("a.test", "-tls1_3", { resume: "reload13" });
  const after12 = await handshake("a.test", "-tls1_2", { resume: "reload12" });
  expect([after13.kind, after13.answered, after12.kind, after12.answered]).toEqual(["Reused", true, "Reused", true]);
});
