/** Markers the test guest prints on its serial port: `CPTEST:key=value` (vm-test/guest/cptest-report). */
export class Markers {
  private readonly entries: Array<[string, string]> = [];

  constructor(serial: string) {
    // A marker may follow other console output on the same line (interleaved writes).
    for (const match of serial.matchAll(/CPTEST:([A-Za-z0-9:._-]+)(?:=([^\r\n]*))?/g)) {
      this.entries.push([match[1]!, (match[2] ?? "").trim()]);
    }
  }

  /** Last value of `key`, or undefined when the guest never printed it. */
  get(key: string): string | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const [k, v] = this.entries[i]!;
      if (k === key) return v;
    }
    return undefined;
  }

  /** Every value of a repeated key (e.g. `block`), in order. */
  all(key: string): string[] {
    return this.entries.filter(([k]) => k === key).map(([, v]) => v);
  }

  has(key: string): boolean {
    return this.entries.some(([k]) => k === key);
  }

  /** True when the report ran to its end (the guest reached multi-user.target and reported). */
  get complete(): boolean {
    return this.has("begin") && this.has("end");
  }

  /** Block devices as reported by lsblk: name -> size in bytes. */
  blockSizes(): Map<string, number> {
    const sizes = new Map<string, number>();
    for (const line of this.all("block")) {
      const [name, size] = line.split(" ");
      if (name && size) sizes.set(name, Number(size));
    }
    return sizes;
  }

  /** Comma-separated list value as an array (empty value -> []). */
  list(key: string): string[] {
    const value = this.get(key);
    return value ? value.split(",").filter((v) => v !== "") : [];
  }
}
