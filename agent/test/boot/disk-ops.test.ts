/**
 * realBootDisk, the BootDisk the boot uses, runs the same programs with the same arguments the
 * before-sysroot steps ran before the interface existed, and a key goes to cryptsetup on stdin
 * only. The programs are shims on PATH that record their argv and stdin; the LUKS2 header that
 * openChecked checks is a real one (cryptsetup luksFormat on a file, root only).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { realBootDisk } from "../../src/boot/disk-ops.ts";
import * as luks from "../../src/disk/luks.ts";

const isRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), "disk-ops-"));
const shims = join(dir, "bin");
const calls = join(dir, "calls.log");
const stdins = join(dir, "stdin");
const KEY = new TextEncoder().encode("disk-ops-test-key-0123456789abcdef");
const SHIMMED = ["cryptsetup", "mkfs.ext4", "tune2fs", "e2fsck", "resize2fs"];
const savedPath = process.env.PATH;

/** The real cryptsetup, before PATH points at the shims. */
const realCryptsetup = Bun.which("cryptsetup");
let device: string;

beforeAll(async () => {
  mkdirSync(shims);
  mkdirSync(stdins);
  for (const tool of SHIMMED) {
    const shim = join(shims, tool);
    // One line per call: the program and its arguments; stdin kept in a file per call.
    writeFileSync(
      shim,
      `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> '${calls}'\ncat > '${stdins}/'$(date +%s%N)\n${tool === "e2fsck" ? "exit 1" : "exit 0"}\n`,
    );
    chmodSync(shim, 0o755);
  }
  device = join(dir, "volume.img");
  writeFileSync(device, "");
  truncateSync(device, 24 * 1024 * 1024);
  if (isRoot && realCryptsetup) await luks.format(device, KEY, { subsystem: luks.SUBSYSTEM_READY });
  process.env.PATH = `${shims}:${savedPath}`;
});

afterAll(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

function takeCalls(): { argv: string[]; stdin: Buffer[] } {
  const argv = readFileSync(calls, "utf8").trim().split("\n");
  const files = readdirSync(stdins).sort();
  const stdin = files.map((f) => readFileSync(join(stdins, f)));
  rmSync(calls);
  for (const f of files) rmSync(join(stdins, f));
  return { argv, stdin };
}

const disk = realBootDisk({ systemDir: "/nonexistent" });

describe.skipIf(!isRoot || !realCryptsetup)("the key goes to cryptsetup on stdin, never in argv", () => {
  const encodings = [
    new TextDecoder().decode(KEY),
    Buffer.from(KEY).toString("hex"),
    Buffer.from(KEY).toString("base64"),
  ];

  test("openChecked: the checked private header copy, the keyslot, the key on stdin", async () => {
    const copies = join(dir, "copies");
    await disk.luks.openChecked(device, "fde-test", KEY, {
      profile: { integrity: false },
      keySlot: 0,
      dir: copies,
    });
    const { argv, stdin } = takeCalls();
    expect(argv).toHaveLength(1);
    expect(argv[0]).toMatch(
      new RegExp(
        `^cryptsetup open --type luks2 --disable-external-tokens --header ${copies}/\\S+ --key-slot 0 --key-file=- ${device} fde-test$`,
      ),
    );
    for (const e of encodings) expect(argv[0]).not.toContain(e);
    expect(stdin).toEqual([Buffer.from(KEY)]);
    // The private header copy is gone after the open.
    expect(readdirSync(copies)).toEqual([]);
  });

  test("format: the key on stdin, the options in argv", async () => {
    await disk.luks.format("/dev/mapper/cryptpilot-delta", KEY, {
      integrity: true,
      integrityNoWipe: true,
      subsystem: luks.SUBSYSTEM_INITIALIZING,
      randomKey: true,
    });
    const { argv, stdin } = takeCalls();
    expect(argv).toHaveLength(1);
    expect(argv[0]).toStartWith("cryptsetup luksFormat --batch-mode --type luks2");
    expect(argv[0]).toContain(
      "--integrity hmac-sha256 --integrity-no-wipe --subsystem cryptpilot-initializing",
    );
    expect(argv[0]).toEndWith("--key-file=- /dev/mapper/cryptpilot-delta");
    for (const e of encodings) expect(argv[0]).not.toContain(e);
    expect(stdin).toEqual([Buffer.from(KEY)]);
  });
});

describe("the ext4 tools run as the steps ran them", () => {
  test("mkfs.ext4 with eager init, tune2fs, e2fsck -p (exit 1 = fixed, fine), resize2fs -f", async () => {
    await disk.fs.mkfsExt4("/dev/mapper/delta");
    await disk.fs.makeWritable("/dev/mapper/rootfs");
    await disk.fs.check("/dev/mapper/rootfs");
    await disk.fs.resize("/dev/mapper/rootfs");
    expect(takeCalls().argv).toEqual([
      "mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/delta",
      "tune2fs -O ^read-only /dev/mapper/rootfs",
      "e2fsck -p /dev/mapper/rootfs",
      "resize2fs -f /dev/mapper/rootfs",
    ]);
  });

  test("readHead returns the first bytes, fewer on a short file", async () => {
    const file = join(dir, "head.bin");
    writeFileSync(file, Buffer.from([1, 2, 3, 4, 5]));
    expect([...(await disk.block.readHead(file, 4))]).toEqual([1, 2, 3, 4]);
    expect((await disk.block.readHead(file, 2048)).length).toBe(5);
  });
});
