import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";

const MiB = 1024 * 1024;
let upstreamBackpressure = 0;
let flood: { total: number; sent: number } = { total: 0, sent: 0 };

const wsOrigin = origin(
  (req, server) => {
    const url = new URL(req.url);
    const ok = server.upgrade(req, {
      data: { path: url.pathname, auth: req.headers.get("authorization"), xff: req.headers.get("x-forwarded-for") },
      headers: req.headers.get("sec-websocket-protocol")?.includes("chat.v2") ? { "sec-websocket-protocol": "chat.v2" } : {},
    });
    return ok ? undefined : new Response("not a websocket", { status: 400 });
  },
  {
    websocket: {
      open(ws: import("bun").ServerWebSocket<{ path: string; auth: string | null; xff: string | null }>) {
        ws.send(JSON.stringify({ hello: ws.data.path, auth: ws.data.auth, xff: ws.data.xff }));
        if (ws.data.path === "/flood") {
          // Push flood.total bytes as fast as the gateway lets us, counting when it pushes back.
          const chunk = new Uint8Array(MiB);
          const push = () => {
            while (flood.sent < flood.total) {
              const r = ws.send(chunk);
              flood.sent += MiB;
              if (r === -1) {
                upstreamBackpressure++;
                return; // wait for drain
              }
            }
          };
          (ws as unknown as { push: () => void }).push = push;
          push();
        }
      },
      drain(ws: { push?: () => void }) {
        ws.push?.();
      },
      message(ws: import("bun").ServerWebSocket<unknown>, msg: string | Buffer) {
        ws.send(typeof msg === "string" ? `echo:${msg}` : msg);
      },
    },
  },
);
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ routes: { ws: `hosts = ["ws.example"]\nupstreams = ["http://127.0.0.1:${wsOrigin.port}"]\n` } });
});

afterAll(async () => {
  await gw.cleanup();
  wsOrigin.stop(true);
});

function open(path: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<{ ws: WebSocket; first: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}${path}`, { headers: { host: "ws.example", ...headers }, protocols } as never);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => resolve({ ws, first: JSON.parse(String(e.data)) });
    ws.onerror = () => reject(new Error("websocket failed"));
  });
}

function next(ws: WebSocket): Promise<string | ArrayBuffer> {
  return new Promise((resolve) => (ws.onmessage = (e) => resolve(e.data)));
}

test("text and binary messages pass both ways, with path, headers and subprotocol", async () => {
  const { ws, first } = await open("/chat?room=1", ["chat.v1", "chat.v2"], { authorization: "Bearer t" });
  expect(first).toEqual({ hello: "/chat", auth: "Bearer t", xff: "127.0.0.1" });
  expect(ws.protocol).toBe("chat.v2");
  ws.send("ping");
  expect(await next(ws)).toBe("echo:ping");
  const bin = new Uint8Array([1, 2, 3, 250]);
  ws.send(bin);
  expect(new Uint8Array((await next(ws)) as ArrayBuffer)).toEqual(bin);
  const closed = new Promise<number>((r) => (ws.onclose = (e) => r(e.code)));
  ws.close(1000, "bye");
  expect(await closed).toBe(1000);
});

test("a client that stops reading pushes back on the upstream instead of filling the gateway's memory", async () => {
  flood = { total: 256 * MiB, sent: 0 };
  upstreamBackpressure = 0;
  const before = gw.memory().rssKiB;
  const { ws } = await open("/flood");
  (ws as unknown as { pause(): void }).pause();
  await Bun.sleep(1500);
  // With the client paused, the upstream must have been told to wait long before it sent everything.
  expect(upstreamBackpressure).toBeGreaterThan(0);
  expect(flood.sent).toBeLessThan(flood.total);
  const during = gw.memory().rssKiB;
  console.log(`flood: gateway rss ${before} -> ${during} KiB while paused, upstream sent ${flood.sent / MiB} MiB`);
  expect(during - before).toBeLessThan(128 * 1024);
  let received = 0;
  const done = new Promise<void>((resolve) => {
    ws.onmessage = (e) => {
      received += (e.data as ArrayBuffer).byteLength;
      if (received >= flood.total) resolve();
    };
  });
  (ws as unknown as { resume(): void }).resume();
  await done;
  expect(received).toBe(flood.total);
  ws.close();
}, 30_000);

test("an upstream that refuses the upgrade gets 502 for the client", async () => {
  const r = await fetch(`${gw.base}/`, { headers: { host: "ws.example" } });
  expect(r.status).toBe(400);
  const gone = await startGateway({ routes: { ws: `hosts = ["ws.example"]\nupstreams = ["http://127.0.0.1:1"]\n` } });
  try {
    const res = await fetch(`${gone.base}/`, {
      headers: {
        host: "ws.example",
        upgrade: "websocket",
        connection: "upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
    });
    expect(res.status).toBe(502);
  } finally {
    await gone.cleanup();
  }
});
