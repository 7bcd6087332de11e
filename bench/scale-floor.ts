/**
 * Bun's own floor for bench/scale.sh: a bare Bun.listen server that answers every request on a connection with the same 1 KB response and keeps no state of
 * its own per connection (no parser, no limits, no proxying). What one of its idle keep-alive connections costs is what any server on Bun pays before doing
 * anything: the part of gatehouse's figure that is Bun's. Usage: bun bench/scale-floor.ts PORT
 */
const port = Number(process.argv[2]);
const answer = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1024\r\ncache-control: no-store\r\n\r\n${"x".repeat(1024)}`);
Bun.listen<undefined>({
  hostname: "127.0.0.1",
  port,
  socket: {
    // One answer per head; the bench's heads arrive whole, one per packet.
    data(s, d) {
      for (let i = d.indexOf("\r\n\r\n"); i >= 0; i = d.indexOf("\r\n\r\n", i + 4)) s.write(answer);
    },
  },
});
