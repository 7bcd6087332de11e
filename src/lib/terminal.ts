/** Reading a secret on a terminal: raw mode, nothing echoed. */

/** TerminalIn is the part of a TTY input stream readHidden uses. */
type TerminalIn = {
  setRawMode(raw: boolean): unknown;
  resume(): unknown;
  pause(): unknown;
  on(event: "data", fn: (d: Buffer) => void): unknown;
  off(event: "data", fn: (d: Buffer) => void): unknown;
};

/** readHidden asks for a line on a terminal without echoing it (raw mode: Enter ends it, Ctrl-C or Ctrl-D gives up: undefined). */
export function readHidden(prompt: string, stdin: TerminalIn, out: { write(s: string): unknown }): Promise<string | undefined> {
  // Raw mode first: what is typed as soon as the prompt shows is not echoed.
  stdin.setRawMode(true);
  out.write(prompt);
  stdin.resume();
  return new Promise((resolveP) => {
    let text = "";
    const onData = (d: Buffer) => {
      for (const ch of d.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0003" || ch === "\u0004") {
          stdin.off("data", onData);
          stdin.setRawMode(false);
          stdin.pause();
          out.write("\n");
          resolveP(ch === "\r" || ch === "\n" ? text : undefined);
          return;
        }
        if (ch === "\u007f" || ch === "\b") text = [...text].slice(0, -1).join("");
        else text += ch;
      }
    };
    stdin.on("data", onData);
  });
}
