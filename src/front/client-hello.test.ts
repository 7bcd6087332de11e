import { expect, test } from "bun:test";
import tls from "node:tls";
import { MAX_HELLO, NOT_TLS, readHello } from "./client-hello.ts";

/** capture returns the first bytes a real TLS client sends (its ClientHello), caught by a plain listener that never answers. */
async function capture(opts: tls.ConnectionOptions): Promise<Buffer> {
  let got: (b: Buffer) => void = () => {};
  const first = new Promise<Buffer>((r) => (got = r));
  let buf = Buffer.alloc(0);
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, d) {
        buf = Buffer.concat([buf, d]);
        if (buf.byteLength >= 5 && buf.byteLength >= 5 + buf.readUInt16BE(3)) got(buf);
      },
    },
  });
  const c = tls.connect({ host: "127.0.0.1", port: l.port, rejectUnauthorized: false, ...opts });
  c.on("error", () => undefined);
  const timeout = new Promise<Buffer>((_, rej) => setTimeout(() => rej(new Error("no ClientHello within 3s")), 3000));
  try {
    return await Promise.race([first, timeout]);
  } finally {
    c.destroy();
    l.stop(true);
  }
}

test("a real client's hello gives its server name (lowercased) and ALPN list, in one piece or byte by byte", async () => {
  const hello = await capture({ servername: "App.Example.test", ALPNProtocols: ["h2", "http/1.1"] });
  expect(readHello(hello)).toEqual({ serverName: "app.example.test", alpn: ["h2", "http/1.1"] });
  for (let n = 0; n < hello.byteLength; n += 37) expect(readHello(hello.subarray(0, n))).toBeUndefined();
});

test("no SNI and no ALPN: both empty; acme-tls/1 offered alone is read", async () => {
  const bare = await capture({});
  expect(readHello(bare)).toEqual({ serverName: undefined, alpn: [] });
  const acme = await capture({ servername: "a.test", ALPNProtocols: ["acme-tls/1"] });
  expect(readHello(acme)).toEqual({ serverName: "a.test", alpn: ["acme-tls/1"] });
});

test("a hello split over two records is put back together", async () => {
  const hello = await capture({ servername: "split.test", ALPNProtocols: ["http/1.1"] });
  const body = hello.subarray(5);
  const cut = 40;
  const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.byteLength >> 8, b.byteLength & 255]), b]);
  const two = Buffer.concat([rec(body.subarray(0, cut)), rec(body.subarray(cut))]);
  expect(readHello(two.subarray(0, 5 + cut + 3))).toBeUndefined();
  expect(readHello(two)).toEqual({ serverName: "split.test", alpn: ["http/1.1"] });
});

test("plain HTTP, another record type, a broken length or extension, or endless bytes: NOT_TLS", async () => {
  expect(readHello(Buffer.from("GET / HTTP/1.1\r\n"))).toBe(NOT_TLS);
  expect(readHello(Buffer.from([21, 3, 3, 0, 2, 2, 40]))).toBe(NOT_TLS);
  const hello = await capture({ servername: "x.test", ALPNProtocols: ["http/1.1"] });
  const broken = Buffer.from(hello);
  // The extensions' total length, two bytes before the first extension, made one larger than the message holds.
  const extStart = 5 + 4 + 2 + 32 + 1 + broken[5 + 4 + 2 + 32]!;
  const csLen = broken.readUInt16BE(extStart);
  const compAt = extStart + 2 + csLen;
  const extLenAt = compAt + 1 + broken[compAt]!;
  broken.writeUInt16BE(broken.readUInt16BE(extLenAt) + 1, extLenAt);
  expect(readHello(broken)).toBe(NOT_TLS);
  expect(readHello(Buffer.alloc(MAX_HELLO + 10, 22))).toBe(NOT_TLS);
});
