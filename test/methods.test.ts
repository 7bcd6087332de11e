/** Methods a gateway answers itself: CONNECT is refused at the edge, TRACE unless its route allows it (RFC 9110 §9.3.6, §9.3.8). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, rawRequest, startGateway, type TestGateway } from "./harness.ts";

const seen: string[] = [];
const app = origin((req) => {
  seen.push(`${req.method} ${new URL(req.url).pathname}`);
  return new Response("from origin");
});
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    routes: {
      site: `hosts = ["m.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\n[[paths]]\nprefix = "/trace/"\nupstreams = ["http://127.0.0.1:${app.port}"]\nallow_trace = true\n`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  app.stop(true);
});

test("CONNECT gets 405 with Allow from the gateway and never reaches an upstream", async () => {
  const before = seen.length;
  const text = await rawRequest(gw.httpPort, "CONNECT m.test:443 HTTP/1.1\r\nHost: m.test:443\r\n\r\n", 1000);
  expect(text).toStartWith("HTTP/1.1 405 ");
  expect(text.toLowerCase()).toContain("\r\nallow: get, head, post");
  expect(seen.slice(before)).toEqual([]);
});

test("TRACE gets 405 unless the route says allow_trace = true", async () => {
  const before = seen.length;
  const refused = await rawRequest(gw.httpPort, "TRACE /x HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n", 1000);
  expect(refused).toStartWith("HTTP/1.1 405 ");
  const allowed = await rawRequest(gw.httpPort, "TRACE /trace/x HTTP/1.1\r\nHost: m.test\r\nConnection: close\r\n\r\n", 1000);
  expect(allowed).toStartWith("HTTP/1.1 200 ");
  expect(seen.slice(before)).toEqual(["TRACE /trace/x"]);
});
