/**
 * Client and origin for bench/tcp-stream.sh: one long TCP stream through a TLS-terminating proxy (gatehouse [[tcp]] or nginx stream).
 *
 *   bun bench/tcp-stream-client.ts origin PORT               a plain TCP origin on 127.0.0.1:PORT (runs until killed). Each connection
 *                                                            starts with one line: "UP N" (read N bytes, discard them, answer "OK\n"
 *                                                            on the last) or "DOWN N" (send N bytes, then close)
 *   bun bench/tcp-stream-client.ts up|down PORT SNI BYTES    one TLS connection to 127.0.0.1:PORT with SNI, the certificate not verified;
 *                                                            up sends BYTES to the origin and stops the clock at its "OK" (the origin has
 *                                                            the last byte), down asks for BYTES and stops at the last one received
 *
 * The client prints one JSON line: bytes, seconds (from the end of the handshake), MB/s (10^6 bytes), the negotiated TLS version and
 * cipher, and its own CPU seconds (user + system) over the transfer, to show whether it, not the proxy, was the limit. It writes 1 MiB
 * chunks and waits for drain when the socket takes less (backpressure). Every transfer is bounded: 300 s, then exit 1.
 */
import type { Socket } from "bun";

const CHUNK = Buffer.alloc(1 << 20, 0x61);
const LIMIT_MS = 300_000;
const [mode, portArg] = [process.argv[2], Number(process.argv[3])];

/** Sender writes count bytes of CHUNK to a socket as fast as it takes them; pump again on drain. */
class Sender {
  private left: number;
  private offset = 0;
  constructor(
    total: number,
    private readonly done: () => void,
  ) {
    this.left = total;
  }

  pump(s: Socket<unknown>): void {
    while (this.left > 0) {
      const n = Math.min(CHUNK.length - this.offset, this.left);
      const wrote = s.write(CHUNK.subarray(this.offset, this.offset + n));
      if (wrote <= 0) return;
      this.left -= wrote;
      this.offset = (this.offset + wrote) % CHUNK.length;
      if (wrote < n) return; // the rest on drain
    }
    this.done();
    this.left = -1;
  }
}

type OriginState = { head: string; up?: number; got: number; sender?: Sender };

if (mode === "origin") {
  Bun.listen<OriginState>({
    hostname: "127.0.0.1",
    port: portArg,
    socket: {
      open(s) {
        s.data = { head: "", got: 0 };
      },
      data(s, chunk) {
        const st = s.data;
        let body = chunk;
        if (st.up === undefined && !st.sender) {
          const text = st.head + chunk.toString("latin1");
          const nl = text.indexOf("\n");
          if (nl < 0) {
            st.head = text;
            return;
          }
          const [verb, n] = text.slice(0, nl).trim().split(" ");
          body = chunk.subarray(chunk.length - (text.length - nl - 1));
          if (verb === "DOWN") {
            st.sender = new Sender(Number(n), () => s.end());
            st.sender.pump(s);
            return;
          }
          st.up = Number(n);
        }
        if (st.up === undefined) return;
        st.got += body.length;
        if (st.got >= st.up) {
          s.write("OK\n");
          st.up = Number.POSITIVE_INFINITY;
        }
      },
      drain(s) {
        s.data.sender?.pump(s);
      },
      error() {},
    },
  });
  console.log(JSON.stringify({ origin: portArg }));
} else if (mode === "up" || mode === "down") {
  const [sni, bytes] = [process.argv[4]!, Number(process.argv[5])];
  const timer = setTimeout(() => {
    console.error(`tcp-stream-client: ${mode} of ${bytes} bytes not done within ${LIMIT_MS / 1000} s`);
    process.exit(1);
  }, LIMIT_MS);
  let t0 = 0;
  let cpu0 = process.cpuUsage();
  let got = 0;
  let tls = "";
  let cipher = "";
  const finish = (s: Socket<unknown>) => {
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    clearTimeout(timer);
    console.log(
      JSON.stringify({ dir: mode, bytes, seconds: +seconds.toFixed(3), mbps: +(bytes / seconds / 1e6).toFixed(1), tls, cipher, client_cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(2) }),
    );
    s.end();
    process.exit(0);
  };
  const sender = new Sender(bytes, () => undefined);
  await Bun.connect({
    hostname: "127.0.0.1",
    port: portArg,
    tls: { serverName: sni, rejectUnauthorized: false },
    socket: {
      handshake(s, ok, err) {
        tls = s.getTLSVersion();
        cipher = s.getCipher().name;
        // The certificate is not checked (rejectUnauthorized: false): an authorization error here is expected, a failed handshake is not.
        if (!ok) {
          console.error(`tcp-stream-client: handshake failed: ${err?.message}`);
          process.exit(1);
        }
        t0 = performance.now();
        cpu0 = process.cpuUsage();
        s.write(`${mode === "up" ? "UP" : "DOWN"} ${bytes}\n`);
        if (mode === "up") sender.pump(s);
      },
      drain(s) {
        if (mode === "up") sender.pump(s);
      },
      data(s, chunk) {
        if (mode === "up") {
          if (chunk.toString("latin1").includes("OK")) finish(s);
          return;
        }
        got += chunk.length;
        if (got >= bytes) finish(s);
      },
      close() {
        if (mode === "down" ? got < bytes : true) {
          console.error(`tcp-stream-client: the connection closed early (${got} of ${bytes} bytes received)`);
          process.exit(1);
        }
      },
      error(_s, e) {
        console.error(`tcp-stream-client: ${e.message}`);
        process.exit(1);
      },
    },
  });
} else {
  console.error("usage: bun bench/tcp-stream-client.ts origin PORT | up|down PORT SNI BYTES");
  process.exit(2);
}
