/** Test dovecot: Debian's dovecot-imapd as a private instance in the foreground on loopback (plain IMAP and a PROXY-protocol listener, one user, maildir in a temp dir), and a line-based IMAP client. */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./harness.ts";

/** DOVECOT_USER and DOVECOT_PASSWORD are the one account of every test dovecot (a passwd-file entry with a plain password). */
export const DOVECOT_USER = "user";
export const DOVECOT_PASSWORD = "password";

/** DOVECOT is where Debian's dovecot-core puts the server (`apt-get install dovecot-imapd`). */
export const DOVECOT = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"].find((p) => existsSync(p)) ?? "dovecot";

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/** NOBODY is the uid and gid mail is stored as when the tests run as root: dovecot refuses mail access as uid 0. */
const NOBODY = 65534;

/** TestDovecot is one running dovecot: port speaks plain IMAP, haproxyPort expects a PROXY v1/v2 header first (from 127.0.0.0/8); logFile is its whole log. */
export type TestDovecot = {
  readonly port: number;
  readonly haproxyPort: number;
  readonly logFile: string;
  /** log is the log file's text now. */
  log(): string;
  /** waitForLog waits (at most timeoutMs) for a log line that matches and returns it; it throws with the log's tail otherwise. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** stop ends dovecot with SIGTERM (its master stops every child), SIGKILL after 5 s. */
  stop(): Promise<void>;
};

/** DovecotOptions: requireTls keeps dovecot's own default `disable_plaintext_auth = yes` (a LOGIN only on a connection it knows to be secured). */
export type DovecotOptions = { requireTls?: boolean };

/**
 * dovecotConfig is a whole dovecot.conf for an instance living in dir: base_dir, state_dir and the log under it, no TLS, plain-text logins allowed (unless
 * requireTls), login lines with the client's port and the local port, two inet listeners on 127.0.0.1 (the second with `haproxy = yes`, trusted for
 * 127.0.0.0/8), a passwd-file user and maildir under dir. As root its login processes run as Debian's dovenull and its internal ones as dovecot, and mail is
 * stored as nobody; as another user everything runs as that user, without chroot.
 */
export function dovecotConfig(dir: string, port: number, haproxyPort: number, opts: DovecotOptions = {}): string {
  const root = process.getuid?.() === 0;
  const me = userInfo();
  const [internalUser, internalGroup, loginUser] = root ? ["dovecot", "dovecot", "dovenull"] : [me.username, groupName(me.gid), me.username];
  const [uid, gid] = root ? [NOBODY, NOBODY] : [me.uid, me.gid];
  return `# a test instance: nothing here reads /etc/dovecot
protocols = imap
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = gatehouse-test-${port}
log_path = ${dir}/dovecot.log
ssl = no
disable_plaintext_auth = ${opts.requireTls ? "yes" : "no"}
auth_mechanisms = plain login
default_internal_user = ${internalUser}
default_internal_group = ${internalGroup}
default_login_user = ${loginUser}
first_valid_uid = 1
first_valid_gid = 1
haproxy_trusted_networks = 127.0.0.0/8
# the ports too: a test compares them with its own socket's (defaults lack rport and lport)
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l lport=%{lport} mpid=%e %c session=<%{session}>
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${dir}/mail/%u
}
mail_location = maildir:~/Maildir
${root ? "" : "# not root: no chroot (it needs CAP_SYS_CHROOT)\nservice anvil {\n  chroot =\n}\n"}service imap-login {
${root ? "" : "  chroot =\n"}  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
  inet_listener imap_haproxy {
    address = 127.0.0.1
    port = ${haproxyPort}
    haproxy = yes
  }
}
`;
}

function groupName(gid: number): string {
  for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
    const [name, , id] = line.split(":");
    if (id === String(gid) && name) return name;
  }
  return String(gid);
}

/**
 * startDovecot writes the config into dir (made traversable for dovecot's unprivileged processes) and starts `dovecot -F -c`, then waits, at most 10 s,
 * until the plain port greets with dovecot's `* OK [CAPABILITY … ready.` (its first greeting may be "Waiting for authentication process"). It throws with
 * the log's tail when dovecot exits or does not answer in time.
 */
export async function startDovecot(dir: string, opts: DovecotOptions = {}): Promise<TestDovecot> {
  const port = freePort();
  const haproxyPort = freePort();
  const logFile = join(dir, "dovecot.log");
  const mail = join(dir, "mail");
  // The login processes (dovenull) chroot into base_dir/login and must reach it; mkdtemp makes 0700 directories.
  chmodSync(dir, 0o755);
  for (const d of ["run", "state", "mail"]) mkdirSync(join(dir, d), { recursive: true });
  if (process.getuid?.() === 0) chownSync(mail, NOBODY, NOBODY);
  writeFileSync(join(dir, "users"), `${DOVECOT_USER}:{PLAIN}${DOVECOT_PASSWORD}\n`);
  writeFileSync(join(dir, "dovecot.conf"), dovecotConfig(dir, port, haproxyPort, opts));
  // Its log goes to logFile; stderr has only what comes before the log is open (a config error).
  const stderrFile = join(dir, "dovecot.stderr");
  const proc = Bun.spawn([DOVECOT, "-F", "-c", join(dir, "dovecot.conf")], { stdin: "ignore", stdout: "ignore", stderr: Bun.file(stderrFile) });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  const log = () => read(logFile);
  const tail = () => `${log().split("\n").slice(-15).join("\n")}\n${read(stderrFile)}`;
  const stop = async () => {
    if (proc.exitCode === null) proc.kill("SIGTERM");
    if ((await Promise.race([proc.exited, Bun.sleep(STOP_TIMEOUT_MS).then(() => "late")])) === "late") proc.kill("SIGKILL");
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`dovecot exited with ${proc.exitCode} at start:\n${tail()}`);
    if (await greets(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dovecot did not greet on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms:\n${tail()}`);
    }
    await Bun.sleep(50);
  }
  return {
    port,
    haproxyPort,
    logFile,
    log,
    async waitForLog(pattern, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = log()
          .split("\n")
          .find((l) => pattern.test(l));
        if (hit) return hit;
        if (Date.now() > end) throw new Error(`no dovecot log line matches ${pattern} within ${timeoutMs} ms:\n${tail()}`);
        await Bun.sleep(25);
      }
    },
    stop,
  };
}

/** greets says whether an IMAP server on 127.0.0.1:port sends a ready greeting within a second. */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      buf += d;
      if (/^\* OK \[CAPABILITY [^\r\n]*\r\n/m.test(buf)) done(true);
    });
    s.on("error", () => done(false));
    s.on("close", () => done(false));
  });
}

/** ImapClient is a line-based IMAP conversation over a connected socket (plain or TLS): the greeting, then tagged commands one at a time. */
export class ImapClient {
  private buf = "";
  private waiters: (() => void)[] = [];
  private closed = false;

  constructor(readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** until waits (at most timeoutMs) for a complete line that matches and returns everything up to and including it, consumed; it throws with what came. */
  private async until(pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.buf.split("\r\n");
      const i = lines.slice(0, -1).findIndex((l) => pattern.test(l));
      if (i >= 0) {
        const got = lines.slice(0, i + 1).join("\r\n");
        this.buf = lines.slice(i + 1).join("\r\n");
        return got;
      }
      const left = deadline - Date.now();
      if (this.closed || left <= 0)
        throw new Error(
          `no IMAP line matching ${pattern}${this.closed ? " before the connection closed" : ` within ${timeoutMs} ms`}; got ${JSON.stringify(this.buf)}`,
        );
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** greeting reads the server's untagged greeting (`* OK …`, the last of them if dovecot sent a "waiting" one first). */
  greeting(timeoutMs = 5000): Promise<string> {
    return this.until(/^\* (OK|BYE|PREAUTH) \[CAPABILITY /, timeoutMs);
  }

  /** command sends `TAG TEXT` and returns the tagged status line (`TAG OK …`, `TAG NO …`, `TAG BAD …`) after the untagged lines before it. */
  async command(tag: string, text: string, timeoutMs = 5000): Promise<{ status: string; lines: string }> {
    this.socket.write(`${tag} ${text}\r\n`);
    const lines = await this.until(new RegExp(`^${tag} (OK|NO|BAD)\\b`), timeoutMs);
    return { status: lines.split("\r\n").at(-1)!, lines };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** PROXY_V2_SIGNATURE is the 12 bytes that open every PROXY protocol v2 header (haproxy's proxy-protocol.txt, section 2.2). */
const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/**
 * SSL_TLV is a PP2_TYPE_SSL TLV (proxy-protocol.txt, section 2.2.5) saying the client connected over TLS (PP2_CLIENT_SSL) and no certificate of its was
 * refused (verify 0), without sub-TLVs. dovecot takes it to mark the connection secured, as it does a TLS connection of its own.
 */
export const SSL_TLV = Buffer.from([0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]);

/** proxyV2Header is a PROXY v2 header for a TCP over IPv4 connection (version 2, command PROXY, family AF_INET/STREAM), with the given TLVs after the addresses. */
export function proxyV2Header(source: string, sourcePort: number, dest: string, destPort: number, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(12 + tlvs.length);
  for (const [i, octet] of [...source.split("."), ...dest.split(".")].entries()) body.writeUInt8(Number(octet), i);
  body.writeUInt16BE(sourcePort, 8);
  body.writeUInt16BE(destPort, 10);
  tlvs.copy(body, 12);
  const head = Buffer.from([0x21, 0x11, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, body]);
}
