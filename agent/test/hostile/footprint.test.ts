/**
 * Hostile inputs of convert's footprint readers (agent/src/convert/footprint.ts): the image whose
 * initrd compression convert logs is built by the guest's own dracut (the guest image's code), and
 * its headers decide what is read. Oversized files, a UKI whose .initrd section points past
 * its end, a cpio member claiming 4 GiB and a file that is no PE end with a named error (or a
 * name), within seconds and without reading the claimed sizes into memory.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUILT_IMAGE_MAX_BYTES, builtInitrdCompression } from "../../src/convert/footprint.ts";
import { tempDir } from "../../testkit/sh.ts";
import { bounded } from "./limits.ts";

const work = tempDir("hostile-footprint");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const LIMITS = { ms: 5000, mib: 200 };

/** A PE32+ image with one section NAME at POINTER of SIZE bytes, FILESIZE bytes long (zeros after the headers). */
function pe(name: string, pointer: number, size: number, fileSize = 4096): Uint8Array {
  const b = Buffer.alloc(fileSize);
  b.write("MZ", 0, "latin1");
  b.writeUInt32LE(0x40, 0x3c);
  b.writeUInt32LE(0x00004550, 0x40);
  b.writeUInt16LE(0x8664, 0x44);
  b.writeUInt16LE(1, 0x46); // one section
  b.writeUInt16LE(240, 0x54); // SizeOfOptionalHeader (PE32+)
  b.writeUInt16LE(0x20b, 0x58);
  b.writeUInt32LE(16, 0x58 + 108);
  const section = 0x58 + 240;
  b.write(name, section, "latin1");
  b.writeUInt32LE(size, section + 16);
  b.writeUInt32LE(pointer, section + 20);
  return b;
}

const file = (name: string, bytes: Uint8Array) => {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
};

test("a built image over the limit is refused by its size, unread", async () => {
  const path = join(work, "huge.img");
  writeFileSync(path, "");
  truncateSync(path, BUILT_IMAGE_MAX_BYTES + 1);
  const err = await bounded(() => builtInitrdCompression(path, false).catch((e: Error) => e), LIMITS);
  expect((err as Error).message).toContain(`more than the ${BUILT_IMAGE_MAX_BYTES}-byte limit`);
});

test("a UKI whose .initrd section runs past the file is an error, not 'none'", async () => {
  const path = file("past.efi", pe(".initrd", 4000, 0xffffff00));
  const err = await bounded(() => builtInitrdCompression(path, true).catch((e: Error) => e), LIMITS);
  expect((err as Error).message).toContain("the UKI's .initrd section (bytes 4000-");
  expect((err as Error).message).toContain("runs past the end of the file (4096 bytes)");
});

test("a UKI without .initrd, and a file that is no PE, are named errors", async () => {
  const noInitrd = file("no-initrd.efi", pe(".linux", 1024, 16));
  expect(((await builtInitrdCompression(noInitrd, true).catch((e: Error) => e)) as Error).message).toContain(
    "has no .initrd section",
  );
  const text = file("text.efi", new TextEncoder().encode("fake-initrd\n"));
  expect(((await builtInitrdCompression(text, true).catch((e: Error) => e)) as Error).message).toContain(
    "is not a valid PE/COFF (EFI) image",
  );
});

test("an initrd whose cpio member claims 4 GiB ends as a damaged archive, without the 4 GiB", async () => {
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const name = "big\0";
  const header = `070701${hex(1)}${hex(0o100644)}${hex(0)}${hex(0)}${hex(1)}${hex(0)}${hex(0xffffffff)}${hex(0)}${hex(0)}${hex(0)}${hex(0)}${hex(name.length)}${hex(0)}${name}`;
  const path = file("claims.img", Buffer.concat([Buffer.from(header, "latin1"), Buffer.alloc(1 << 20)]));
  const err = await bounded(() => builtInitrdCompression(path, false).catch((e: Error) => e), LIMITS);
  expect((err as Error).message).toContain("damaged cpio archive");
});
