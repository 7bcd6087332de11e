/** A raw client connection for tests: exact bytes out, everything that comes back collected, from a chosen loopback source address. */
import net from "node:net";

/** Client is one raw connection to the gateway, from a chosen loopback address, collecting what comes back. */
export class Client {
  text = "";
  closed = false;
  private constructor(private readonly sock: net.Socket) {
    sock.on("data", (d) => (this.text += d.toString("latin1")));
    sock.on("close", () => (this.closed = true));
    sock.on("error", () => undefined);
  }

  static open(port: number, from = "127.0.0.1"): Promise<Client> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: "127.0.0.1", port, localAddress: from });
      const c = new Client(sock);
      const timer = setTimeout(() => reject(new Error("connect timed out")), 3000);
      const opened = () => {
        clearTimeout(timer);
        resolve(c);
      };
      sock.once("connect", opened);
      // A connection the gateway refuses at once (a cap) may be reset before the client sees its connect: it is opened, and already closed.
      sock.once("close", opened);
    });
  }

  send(bytes: string | Uint8Array): void {
    this.sock.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
  }

  /** until waits (bounded) for pred to hold, and throws with what was received if it does not. */
  async until(pred: (c: Client) => boolean, ms = 3000, what = "condition"): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      if (Date.now() > deadline) throw new Error(`${what} not met within ${ms}ms; received ${JSON.stringify(this.text.slice(0, 400))}, closed=${this.closed}`);
      await Bun.sleep(10);
    }
  }

  /** settle waits until the gateway closes the connection or has been quiet for quietMs (at most maxMs). */
  async settle(quietMs = 300, maxMs = 5000): Promise<void> {
    const deadline = Date.now() + maxMs;
    let seen = -1;
    let since = Date.now();
    while (!this.closed && Date.now() < deadline) {
      if (this.text.length !== seen) [seen, since] = [this.text.length, Date.now()];
      else if (Date.now() - since >= quietMs) return;
      await Bun.sleep(10);
    }
  }

  end(): void {
    this.sock.end();
  }
}
