/** Fields: a message's header fields as plain JavaScript (names lowercased, in the order received, repeated fields kept apart), for the request path where Bun's native Headers cost a copy of every string and a native object per message. */
import { lowerName } from "./http.ts";

/** FieldReader is what reading a message's fields needs: Headers and Fields both are one. */
export interface FieldReader {
  get(name: string): string | null;
  has(name: string): boolean;
}

/** FieldEditor is what editing a message's fields needs: Headers and Fields both are one. */
export interface FieldEditor extends FieldReader {
  set(name: string, value: string): void;
  append(name: string, value: string): void;
  delete(name: string): void;
}

/**
 * Fields is an ordered list of header fields with the reading and editing methods of Headers (get joins repeated fields with ", ", as Headers does). Unlike
 * Headers, iteration gives the fields in order and one by one (a repeated Set-Cookie stays apart), and nothing is native: no string is copied out of or into
 * JavaScript, and no object has to be finalized.
 */
export class Fields implements FieldEditor {
  /** names (lowercase) and values, index by index. */
  private readonly names: string[];
  private readonly values: string[];

  constructor(names: string[] = [], values: string[] = []) {
    this.names = names;
    this.values = values;
  }

  /** from copies any Headers, Fields, list of pairs or record of fields. */
  static from(init: Headers | Fields | Iterable<readonly [string, string]> | Record<string, string> | undefined): Fields {
    if (init instanceof Fields) return init.clone();
    const out = new Fields();
    if (init === undefined) return out;
    if (init instanceof Headers) {
      init.forEach((value, name) => {
        if (name === "set-cookie") return;
        out.names.push(name);
        out.values.push(value);
      });
      for (const c of init.getSetCookie()) out.append("set-cookie", c);
    } else if (Symbol.iterator in init) for (const [name, value] of init as Iterable<readonly [string, string]>) out.append(name, value);
    else for (const name of Object.keys(init)) out.append(name, (init as Record<string, string>)[name]!);
    return out;
  }

  /** size is the number of fields (a repeated field counts once per line). */
  get size(): number {
    return this.names.length;
  }

  /** nameAt and valueAt read the field at index i (0 ≤ i < size), for loops that need neither an iterator nor pairs. */
  nameAt(i: number): string {
    return this.names[i]!;
  }
  valueAt(i: number): string {
    return this.values[i]!;
  }

  get(name: string): string | null {
    const k = lowerName(name);
    const names = this.names;
    let out: string | null = null;
    for (let i = 0; i < names.length; i++) if (names[i] === k) out = out === null ? this.values[i]! : `${out}, ${this.values[i]}`;
    return out;
  }

  /** getAll is every value of a field, one per line (Set-Cookie's, which cannot be joined). */
  getAll(name: string): string[] {
    const k = lowerName(name);
    const out: string[] = [];
    for (let i = 0; i < this.names.length; i++) if (this.names[i] === k) out.push(this.values[i]!);
    return out;
  }

  has(name: string): boolean {
    return this.names.indexOf(lowerName(name)) >= 0;
  }

  /** set replaces every line of the field by one, where its first line was (at the end when it was absent). */
  set(name: string, value: string): void {
    const k = lowerName(name);
    const i = this.names.indexOf(k);
    if (i < 0) {
      this.names.push(k);
      this.values.push(value);
      return;
    }
    this.values[i] = value;
    this.remove(k, i + 1);
  }

  append(name: string, value: string): void {
    this.names.push(lowerName(name));
    this.values.push(value);
  }

  delete(name: string): void {
    const k = lowerName(name);
    const i = this.names.indexOf(k);
    if (i >= 0) this.remove(k, i);
  }

  /** remove drops the lines named k from index `from` on. */
  private remove(k: string, from: number): void {
    const names = this.names;
    let w = from;
    for (let r = from; r < names.length; r++) {
      if (names[r] === k) continue;
      names[w] = names[r]!;
      this.values[w] = this.values[r]!;
      w++;
    }
    names.length = w;
    this.values.length = w;
  }

  forEach(f: (value: string, name: string) => void): void {
    for (let i = 0; i < this.names.length; i++) f(this.values[i]!, this.names[i]!);
  }

  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (let i = 0; i < this.names.length; i++) yield [this.names[i]!, this.values[i]!];
  }

  clone(): Fields {
    return new Fields(this.names.slice(), this.values.slice());
  }

  /** toHeaders is a Headers of these fields, for the APIs that take one (fetch, Response). */
  toHeaders(): Headers {
    const h = new Headers();
    for (let i = 0; i < this.names.length; i++) h.append(this.names[i]!, this.values[i]!);
    return h;
  }
}
