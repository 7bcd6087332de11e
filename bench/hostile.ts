/** Hostile clients for bench/slow-clients.sh: slow request bodies (declared under and over request_buffer) and slow heads, from 127.0.1.0/24, for a bounded time. */
import net from "node:net";

// Usage: bun bench/hostile.ts PORT HOST SLOW_BODIES SLOW_HEADS SECONDS
const [port, host, bodies, heads, seconds] = [Number(process.argv[2]), process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6])];
const socks: net.Socket[] = [];
let open = 0;
let closed = 0;
const source = (i: number) => `127.0.1.${1 + (i % 250)}`;

function connect(i: number, first: string): net.Socket {
  const s = net.connect({ host: "127.0.0.1", port, localAddress: source(i) });
  s.on("connect", () => {
    open++;
    s.write(first);
  });
  s.on("error", () => undefined);
  s.on("close", () => closed++);
  socks.push(s);
  return s;
}

// Half the slow bodies are 100 KB (under the default request_buffer of 1 MiB), half 10 MiB (over it).
for (let i = 0; i < bodies; i++) {
  const size = i % 2 === 0 ? 100_000 : 10 * 1024 * 1024;
  connect(i, `POST /upload HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${size}\r\n\r\n`);
}
for (let i = 0; i < heads; i++) connect(bodies + i, `GET / HTTP/1.1\r\nHost: ${host}\r\n`);

// A few bytes per connection every second: a body or a head that never ends, each gap under every timeout.
const timer = setInterval(() => {
  for (let i = 0; i < socks.length; i++) {
    const s = socks[i]!;
    if (!s.destroyed) s.write(i < bodies ? "xxxx" : "X-Slow: 1\r\n");
  }
}, 1000);
setTimeout(() => {
  clearInterval(timer);
  console.log(JSON.stringify({ opened: open, closed_by_server: closed }));
  for (const s of socks) s.destroy();
  process.exit(0);
}, seconds * 1000);
