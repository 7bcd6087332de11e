/** A Storage lock held in another process, for the contract suites: the child takes the lock, says so, keeps it fresh, and dies by SIGKILL without releasing. */
import { BUN } from "./harness.ts";

/** LockHolders starts lock-holding children from a script that locks (given the name as JSON) and kills any left at cleanup. */
export class LockHolders {
  private readonly children = new Set<ReturnType<typeof Bun.spawn>>();

  /** `lockWith(nameJson)` is the script's statement that takes the lock, e.g. `await new FileStorage(…).lock(${nameJson})`; imports go in `imports`. */
  constructor(
    private readonly imports: string,
    private readonly lockWith: (nameJson: string) => string,
  ) {}

  /** hold takes the lock `name` in a new process and resolves once it holds it; die() kills that process without a release. */
  async hold(name: string): Promise<{ die(): Promise<void> }> {
    const script = `${this.imports}\n${this.lockWith(JSON.stringify(name))};\nconsole.log("locked");\nsetInterval(() => {}, 1000);`;
    const child = Bun.spawn([BUN, "-e", script], { stdout: "pipe", stderr: "inherit" });
    this.children.add(child);
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("locked")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the lock holder exited before it locked ${name}: ${out}`);
      out += new TextDecoder().decode(value);
    }
    return {
      die: async () => {
        child.kill("SIGKILL");
        await child.exited;
      },
    };
  }

  /** killAll kills the holders a failed test left alive. */
  killAll(): void {
    for (const c of this.children) c.kill("SIGKILL");
  }
}
