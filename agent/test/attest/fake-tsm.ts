/**
 * A configfs-tsm emulator for tests: a real temp-dir tree whose files the module under test reads
 * and writes, plus the kernel's side effects (attributes appear on mkdir, writing inblob produces
 * outblob/auxblob and bumps generation).
 */
import { mkdtempSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { nodeTsmFs, type TsmFs } from "../../src/attest/tsm.ts";

export interface FakeTsm {
  root: string;
  fs: TsmFs;
  /** Every inblob the "kernel" received. */
  inblobs: Uint8Array[];
  /** Report entries currently present (should be empty after each call). */
  entries(): Promise<string[]>;
}

export async function fakeTsm(
  provider: string,
  report: (inblob: Uint8Array) => { outblob: Uint8Array; auxblob?: Uint8Array },
): Promise<FakeTsm> {
  const root = mkdtempSync(join(tmpdir(), "fake-tsm-"));
  await fsp.mkdir(join(root, "report"));
  const inblobs: Uint8Array[] = [];
  const generation = new Map<string, number>();
  const bump = async (dir: string) => {
    const g = (generation.get(dir) ?? 0) + 1;
    generation.set(dir, g);
    await fsp.writeFile(join(dir, "generation"), `${g}\n`);
  };
  const fs: TsmFs = {
    async mkdir(p) {
      await nodeTsmFs.mkdir(p);
      await fsp.writeFile(join(p, "provider"), `${provider}\n`);
      await fsp.writeFile(join(p, "generation"), "0\n");
    },
    async rmdir(p) {
      await fsp.rm(p, { recursive: true });
    },
    readFile: nodeTsmFs.readFile,
    async writeFile(p, data) {
      await nodeTsmFs.writeFile(p, data);
      const dir = dirname(p);
      if (basename(p) === "inblob") {
        const inblob = new Uint8Array(data as Uint8Array);
        inblobs.push(inblob);
        const r = report(inblob);
        await fsp.writeFile(join(dir, "outblob"), r.outblob);
        await fsp.writeFile(join(dir, "auxblob"), r.auxblob ?? new Uint8Array());
      }
      await bump(dir);
    },
  };
  return { root, fs, inblobs, entries: () => fsp.readdir(join(root, "report")) };
}

/**
 * Where a TDX quote carries REPORTDATA: after the 48-byte quote header (v5: and the 6-byte body
 * descriptor), 520 bytes into the TD report.
 */
export const TDX_REPORTDATA_AT = { v4: 48 + 520, v5: 54 + 520 } as const;

/** A tdx_guest configfs-tsm answering with `quote`, its REPORTDATA replaced by each request's inblob. */
export function fakeTdxTsm(quote: Uint8Array, version: keyof typeof TDX_REPORTDATA_AT): Promise<FakeTsm> {
  return fakeTsm("tdx_guest", (inblob) => {
    const q = quote.slice();
    q.set(inblob, TDX_REPORTDATA_AT[version]);
    return { outblob: q };
  });
}
