/**
 * readHeaderJson against real LUKS2 headers written by cryptsetup on a plain file (no
 * device-mapper): it must return what `cryptsetup luksDump --dump-json-metadata` prints, survive a
 * damaged primary through the secondary copy, prefer the copy with the higher seqid, and name the
 * device when both copies are bad.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readHeaderJson } from "../../src/disk/luks.ts";
import {
  formatLuksFile,
  hdrSizeOf,
  importToken as importLuksToken,
  readAt,
  writeAt,
} from "../../testkit/luks-craft.ts";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("luks-header test skipped: cryptsetup needs root (its lock directory)");
const dir = mkdtempSync(join(tmpdir(), "luks-header-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOKEN = { type: "cryptpilot-tpm2", keyslots: ["0"], "tpm2-blob": "AAEC", "tpm2-pin": false };

let n = 0;
/** A fresh LUKS2 file; `metadataSize` sets hdr_size (cryptsetup --luks2-metadata-size). */
const luksFile = (metadataSize?: string): string =>
  formatLuksFile(join(dir, `v${n++}.img`), "0123456789abcdef0123456789abcdef", {
    sizeMiB: 20,
    args: metadataSize ? ["--luks2-metadata-size", metadataSize] : [],
  });

const dump = (file: string) =>
  JSON.parse(execFileSync("cryptsetup", ["luksDump", "--dump-json-metadata", file]).toString());

const importToken = (file: string) => importLuksToken(file, TOKEN);

describe.skipIf(!isRoot)("readHeaderJson", () => {
  test("equals cryptsetup's JSON dump, before and after `cryptsetup token import`", async () => {
    const file = luksFile();
    expect(await readHeaderJson(file)).toEqual(dump(file));
    importToken(file);
    const json = (await readHeaderJson(file)) as { tokens: Record<string, unknown> };
    expect(json).toEqual(dump(file));
    expect(Object.values(json.tokens)).toEqual([TOKEN]);
  });

  test("a non-default hdr_size (64 KiB) is found and verified", async () => {
    const file = luksFile("64k");
    importToken(file);
    expect(hdrSizeOf(file)).toBe(65536);
    expect(await readHeaderJson(file)).toEqual(dump(file));
  });

  test("a damaged primary JSON area: the secondary copy is used", async () => {
    const file = luksFile();
    importToken(file);
    const expected = dump(file);
    writeAt(file, 4096 + 10, Buffer.from("garbage"));
    expect(await readHeaderJson(file)).toEqual(expected);
  });

  test("a wiped primary binary header (no magic, no hdr_size): the secondary is searched for", async () => {
    const file = luksFile("128k");
    importToken(file);
    const expected = dump(file);
    writeAt(file, 0, Buffer.alloc(4096));
    expect(await readHeaderJson(file)).toEqual(expected);
  });

  test("both copies valid: the one with the higher seqid wins, whichever it is", async () => {
    const file = luksFile();
    const size = hdrSizeOf(file);
    const before = readAt(file, 0, 2 * size); // both copies, seqid n, no token
    importToken(file); // both copies, seqid n+1, with the token
    const after = readAt(file, 0, 2 * size);
    const tokens = async () => Object.values(((await readHeaderJson(file)) as { tokens: object }).tokens);

    writeAt(file, size, before.subarray(size)); // older secondary
    expect(await tokens()).toEqual([TOKEN]);
    writeAt(file, size, after.subarray(size));
    writeAt(file, 0, before.subarray(0, size)); // older primary
    expect(await tokens()).toEqual([TOKEN]);
  });

  test("both copies damaged: one error naming the device and both reasons", async () => {
    const file = luksFile();
    const size = hdrSizeOf(file);
    writeAt(file, 4096 + 10, Buffer.from("garbage"));
    writeAt(file, size + 4096 + 10, Buffer.from("garbage"));
    await expect(readHeaderJson(file)).rejects.toThrow(
      `${file} has no valid LUKS2 header: primary: checksum mismatch; secondary: checksum mismatch`,
    );
  });

  test("no LUKS2 header at all", async () => {
    const file = join(dir, "blank.img");
    writeFileSync(file, Buffer.alloc(1024 * 1024));
    await expect(readHeaderJson(file)).rejects.toThrow(
      `${file} has no valid LUKS2 header: primary: no LUKS2 header magic`,
    );
  });
});
