/** A one-request raw client for policy tests: any loopback source address, an optional PROXY preamble, the answer parsed. */
import { Client } from "./raw-client.ts";

/** Answer is a parsed response: status, lowercase fields (repeated ones joined with "\n"), body text. */
export type Answer = { status: number; headers: Record<string, string>; body: string };

/** parseAnswer reads the first response of what a connection received. */
export function parseAnswer(text: string): Answer {
  const end = text.indexOf("\r\n\r\n");
  const [line, ...fields] = text.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const f of fields) {
    const c = f.indexOf(":");
    const name = f.slice(0, c).toLowerCase();
    const value = f.slice(c + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}\n${value}`;
  }
  return { status: Number(line?.split(" ")[1] ?? 0), headers, body: text.slice(end + 4) };
}

/** ask sends one request (Connection: close) from `from` and waits for the whole answer; `preamble` goes first (a PROXY protocol header). */
export async function ask(
  port: number,
  opts: { from?: string; host: string; path?: string; headers?: Record<string, string>; preamble?: string; method?: string },
): Promise<Answer> {
  const c = await Client.open(port, opts.from ?? "127.0.0.1");
  const fields = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  c.send(`${opts.preamble ?? ""}${opts.method ?? "GET"} ${opts.path ?? "/"} HTTP/1.1\r\nhost: ${opts.host}\r\nconnection: close\r\n${fields}\r\n`);
  await c.until((x) => x.closed, 5000, "the answer and close");
  return parseAnswer(c.text);
}
