/** https:// upstreams: verified against a configured CA and server name, with a client certificate for origins that require one (mTLS). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, startGateway, tempDir, type TestGateway } from "./harness.ts";

const dir = tempDir("gatehouse-upstream-tls-");
const sh = (cmd: string) => {
  const r = Bun.spawnSync(["bash", "-c", cmd], { cwd: dir });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
};
// A cluster CA, a server certificate for "origin.internal" and a client certificate, made with openssl.
sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=cluster-ca -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who -keyout $who.key -out $who.csr 2>/dev/null
done
printf 'subjectAltName=DNS:origin.internal\\nextendedKeyUsage=serverAuth\\n' > server.ext
printf 'extendedKeyUsage=clientAuth\\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile $who.ext -out $who.pem 2>/dev/null
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other-ca -keyout other-ca.key -out other-ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null`);
const pem = (f: string) => readFileSync(join(dir, f), "utf8");

const plainTls = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: pem("server.pem"), key: pem("server.key") }, fetch: () => new Response("over tls") });
const mutual = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  tls: { cert: pem("server.pem"), key: pem("server.key"), ca: pem("ca.pem"), requestCert: true, rejectUnauthorized: true },
  fetch: () => new Response("over mutual tls"),
});
const secureWs = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  tls: { cert: pem("server.pem"), key: pem("server.key") },
  fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("websocket only", { status: 400 })),
  websocket: {
    message(ws, m) {
      ws.send(`echo ${m}`);
    },
  },
});
let gw: TestGateway;
const tlsTable = (client: boolean, ca = "ca.pem") =>
  `[upstream_tls]\nca = "${join(dir, ca)}"\nserver_name = "origin.internal"\n${client ? `cert = "${join(dir, "client.pem")}"\nkey = "${join(dir, "client.key")}"\n` : ""}`;
const trustedRoute = (ca?: string) => `hosts = ["trusted.test"]\nupstreams = ["https://127.0.0.1:${plainTls.port}"]\n${tlsTable(false, ca)}`;

beforeAll(async () => {
  gw = await startGateway({
    routes: {
      trusted: trustedRoute(),
      wss: `hosts = ["wss.test"]\nupstreams = ["https://127.0.0.1:${secureWs.port}"]\n${tlsTable(false)}`,
      untrusted: `hosts = ["untrusted.test"]\nupstreams = ["https://127.0.0.1:${plainTls.port}"]\n`,
      mtls: `hosts = ["mtls.test"]\nupstreams = ["https://127.0.0.1:${mutual.port}"]\n${tlsTable(true)}`,
      nocert: `hosts = ["nocert.test"]\nupstreams = ["https://127.0.0.1:${mutual.port}"]\n${tlsTable(false)}`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  plainTls.stop(true);
  mutual.stop(true);
  secureWs.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

test("an https upstream is verified against the configured CA and server name", async () => {
  const r = await gw.request("trusted.test");
  expect(r.status).toBe(200);
  expect(await r.text()).toBe("over tls");
});

test("without the CA, the upstream's certificate is refused: 502", async () => {
  expect((await gw.request("untrusted.test")).status).toBe(502);
});

test("mTLS: the client certificate is presented to an origin that requires one; without it, 502", async () => {
  const r = await gw.request("mtls.test");
  expect(r.status).toBe(200);
  expect(await r.text()).toBe("over mutual tls");
  expect((await gw.request("nocert.test")).status).toBe(502);
});

test("a WebSocket to an https upstream is verified with the route's upstream TLS settings", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/`, { headers: { host: "wss.test" } } as never);
  const reply = await new Promise<string>((resolve, reject) => {
    ws.onopen = () => ws.send("hi");
    ws.onmessage = (ev) => resolve(String(ev.data));
    ws.onerror = () => reject(new Error("the WebSocket through the gateway failed"));
    setTimeout(() => reject(new Error("no reply within 5 s")), 5000);
  });
  ws.close();
  expect(reply).toBe("echo hi");
});

test("a rejected reload leaves the running upstream TLS settings alone: the old CA still verifies", async () => {
  // The new config trusts another CA and adds an HTTPS listener on a port that is taken, so the reload must be rejected.
  const taken = Bun.listen({ hostname: "127.0.0.1", port: freePort(), socket: { data() {} } });
  const configPath = join(gw.dir, "config.toml");
  const config = readFileSync(configPath, "utf8");
  try {
    writeFileSync(configPath, config.replace("[listen]\n", `[listen]\nhttps = "127.0.0.1:${taken.port}"\n`));
    gw.writeRoute("trusted", trustedRoute("other-ca.pem"));
    const outcome = await gw.reload();
    expect(outcome.msg).toStartWith("config rejected");
    // Rejected late, by the listener that cannot bind: the new generation and its upstream settings were built first.
    expect(String(outcome.problems)).toContain(`${taken.port}: cannot bind`);
    const r = await gw.request("trusted.test");
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("over tls");
  } finally {
    taken.stop(true);
    writeFileSync(configPath, config);
    gw.writeRoute("trusted", trustedRoute());
  }
});
