/**
 * convert on a synthetic source disk, on this host (no device-mapper): the output is checked with
 * the real tools (sfdisk, LVM reading the PV through a loop device, veritysetup verify,
 * cryptsetup luksDump) and by decrypting the rootfs LV independently with node:crypto.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AMD64, ARM64 } from "../../src/arch.ts";
import { convert } from "../../src/convert/index.ts";
import { privateLvmConf } from "../../src/disk/lvm.ts";
import { FdeError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { create as createTpm2 } from "../../src/providers/tpm2.ts";
import { splitBlob } from "../../src/tpm/seal.ts";
import { findTokens, sealedFromToken } from "../../src/tpm/token.ts";
import { hasSwtpm, startSwtpm, toolsUnsealFiles } from "../../testkit/swtpm.ts";
import { BOOT_UUID, buildSourceImage, elfStandIn, KVER, ROOT_UUID, standInAgent } from "./fixture.ts";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("convert tests skipped: they need root (loop devices, mount)");

const sh = (cmd: string, args: string[], input?: string | Buffer) =>
  execFileSync(cmd, args, { input, stdio: ["pipe", "pipe", "pipe"], maxBuffer: 1 << 28 }).toString();

interface Part {
  start: number;
  size: number;
  name?: string;
  type: string;
}

function partitions(disk: string): Part[] {
  const t = JSON.parse(sh("sfdisk", ["--json", disk])).partitiontable;
  return t.partitions.map((p: Part) => ({ ...p, start: p.start * 512, size: p.size * 512 }));
}

function extract(disk: string, offset: number, length: number, out: string): string {
  sh("dd", [
    `if=${disk}`,
    `of=${out}`,
    "bs=1M",
    `skip=${offset}`,
    `count=${length}`,
    "iflag=skip_bytes,count_bytes",
    "status=none",
  ]);
  return out;
}

function debugfsCat(fs: string, path: string): string {
  return sh("debugfs", ["-R", `cat ${path}`, fs]);
}

/** LV name -> {offset on disk, size}, read by LVM itself from the PV region of DISK. */
function readLvs(dir: string, disk: string, pv: Part) {
  const loop = sh("losetup", [
    "--find",
    "--show",
    "--offset",
    String(pv.start),
    "--sizelimit",
    String(pv.size),
    disk,
  ]).trim();
  try {
    const sys = join(dir, "lvm-check");
    sh("mkdir", ["-p", sys]);
    writeFileSync(join(sys, "lvm.conf"), privateLvmConf(loop));
    const env = { ...process.env, LVM_SYSTEM_DIR: sys, LVM_SUPPRESS_FD_WARNINGS: "1" };
    const lvm = (args: string[]) =>
      execFileSync("lvm", args, { env, stdio: ["pipe", "pipe", "pipe"] }).toString();
    const [peStart, extent] = lvm([
      "pvs",
      "--noheadings",
      "--units",
      "b",
      "--nosuffix",
      "-o",
      "pe_start,vg_extent_size",
      loop,
    ])
      .trim()
      .split(/\s+/)
      .map(Number);
    const autoact = lvm(["vgs", "--noheadings", "-o", "vg_autoactivation", "cryptpilot"]).trim();
    const lvs: Record<string, { offset: number; size: number }> = {};
    for (const line of lvm([
      "lvs",
      "--segments",
      "--noheadings",
      "--units",
      "b",
      "--nosuffix",
      "-o",
      "lv_name,seg_pe_ranges,lv_size",
      "cryptpilot",
    ]).split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 3) continue;
      const first = Number(/:(\d+)-/.exec(f[1]!)![1]);
      lvs[f[0]!] = { offset: pv.start + peStart! + first * extent!, size: Number(f[2]) };
    }
    return { lvs, autoact };
  } finally {
    sh("losetup", ["-d", loop]);
  }
}

/**
 * Decrypt one 4096-byte sector of a LUKS2 aes-xts-plain64 volume, independently of cryptsetup:
 * XTS built from AES-256-ECB (Bun's node:crypto has no XTS cipher). plain64 IV = 512-byte sector
 * number, little endian.
 */
function decryptSector(img: Buffer, volumeKeyHex: string, dataOffset: number, block: number): Buffer {
  const key = Buffer.from(volumeKeyHex, "hex");
  const ecb = (k: Buffer, decrypt: boolean) => {
    const c = decrypt ? createDecipheriv("aes-256-ecb", k, null) : createCipheriv("aes-256-ecb", k, null);
    c.setAutoPadding(false);
    return (b: Buffer) => c.update(b);
  };
  const dec = ecb(key.subarray(0, 32), true);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt((block * 4096) / 512));
  const tweak = ecb(key.subarray(32), false)(iv);
  const out = Buffer.alloc(4096);
  const base = dataOffset + block * 4096;
  for (let j = 0; j < 256; j++) {
    const x = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) x[i] = img[base + j * 16 + i]! ^ tweak[i]!;
    const p = dec(x);
    for (let i = 0; i < 16; i++) out[j * 16 + i] = p[i]! ^ tweak[i]!;
    // tweak *= alpha in GF(2^128), little-endian bytes
    let carry = 0;
    for (let i = 0; i < 16; i++) {
      const next = tweak[i]! >> 7;
      tweak[i] = ((tweak[i]! << 1) | carry) & 0xff;
      carry = next;
    }
    if (carry) tweak[0] = tweak[0]! ^ 0x87;
  }
  return out;
}

const assets = (dir: string, agent = standInAgent(dir)) => {
  return {
    moduleFiles: {
      "module-setup.sh": "#!/bin/bash\ncheck() { return 255; }\n",
      "cryptpilot-fde-before-sysroot.service": "[Unit]\n",
    },
    agentBinary: agent,
  };
};

describe.skipIf(!isRoot)("convert (host, synthetic image)", () => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "convert-test-"));
    source = buildSourceImage(join(dir, "src-plain").replace(/$/, ""));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const configDir = (encrypted: boolean) => {
    const c = join(dir, encrypted ? "cfg-enc" : "cfg-plain");
    sh("mkdir", ["-p", c]);
    writeFileSync(
      join(c, "fde.toml"),
      `[rootfs]\ndelta_location = "disk-persist"\n${encrypted ? '[rootfs.encrypt.exec]\ncommand = "cat"\nargs = ["/k"]\n' : ""}[delta]\n[delta.encrypt.exec]\ncommand = "echo"\nargs = ["d"]\n`,
    );
    return c;
  };

  /**
   * convert of the plain source into the file `output` with the unencrypted config, a 64 MiB /boot
   * and GRUB; `extra` overrides any of those.
   */
  const convertImage = (output: string, extra: Partial<Parameters<typeof convert>[0]> = {}) =>
    convert({
      input: source,
      output,
      device: false,
      configDir: configDir(false),
      bootPartSize: 64 * 1024 * 1024,
      uki: false,
      ukiAppendCmdline: "",
      assets: assets(dir),
      ...extra,
    });

  test("GRUB layout, unencrypted rootfs: partitions, boot entries, initrd, LVM, verity", async () => {
    const out = join(dir, "out-plain.raw");
    const volumes = join(configDir(false), "volumes");
    sh("mkdir", ["-p", volumes]);
    writeFileSync(join(volumes, "scratch.toml"), 'volume = "scratch"\ndev = "/dev/vdb"\n[encrypt.otp]\n');
    await convertImage(out);
    expect(existsSync(out)).toBe(true);
    expect(existsSync(`${out}.partial`)).toBe(false);
    const parts = partitions(out);
    expect(parts.map((p) => p.name)).toEqual(["EFI System Partition", "boot", "cryptpilot"]);
    expect(parts[2]!.type).toBe("E6D6D379-F507-44C2-A23C-238F2A3DF928");

    // Boot partition: kernels, a rebuilt initrd, grub.cfg naming only /dev/mapper/rootfs, boot -> .
    const boot = extract(out, parts[1]!.start, parts[1]!.size, join(dir, "boot.ext4"));
    const grub = debugfsCat(boot, "/grub/grub.cfg");
    expect(grub).toContain(
      `linux\t/boot/vmlinuz-${KVER} root=/dev/mapper/rootfs ro quiet rd.lvm=0 rd.luks=0`,
    );
    expect(grub).not.toContain(`root=UUID=${ROOT_UUID}`);
    expect(grub).not.toContain(ROOT_UUID); // search now looks for the boot partition
    const bootUuid = /UUID="([^"]+)"/.exec(sh("blkid", ["-p", boot]))![1]!;
    expect(grub).toContain(bootUuid);
    expect(sh("debugfs", ["-R", "stat /boot", boot])).toContain('Fast link dest: "."');
    const initrd = debugfsCat(boot, `/initrd.img-${KVER}`);
    expect(initrd).toContain("fake-initrd");
    expect(initrd).toMatch(
      /--add cryptpilot --nostrip --omit\s+iscsi nvmf multipath\s+--include \/etc\/cryptpilot \/etc\/cryptpilot --kver 6\.1\.0-test/,
    );
    expect(initrd).toContain("module: present");
    expect(initrd).toContain('delta_location = "disk-persist"');
    const rootHash = /root_hash = "([0-9a-f]{64})"/.exec(initrd)![1]!;

    // ESP copied, its grub.cfg pointed at the boot partition.
    const espCfg = execFileSync("mtype", ["-i", `${out}@@${parts[0]!.start}`, "::/EFI/debian/grub.cfg"], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
    }).toString();
    expect(espCfg).toContain(`search.fs_uuid ${bootUuid} root`);

    // LVM as LVM itself reads it; the VG never autoactivates on a host that sees the disk.
    const { lvs, autoact } = readLvs(dir, out, parts[2]!);
    expect(Object.keys(lvs).sort()).toEqual(["rootfs", "rootfs_hash"]);
    expect(autoact).toBe("");
    const rootfs = extract(out, lvs.rootfs!.offset, lvs.rootfs!.size, join(dir, "lv-rootfs"));
    const hash = extract(out, lvs.rootfs_hash!.offset, lvs.rootfs_hash!.size, join(dir, "lv-hash"));
    sh("veritysetup", ["verify", rootfs, hash, rootHash]);
    expect(() =>
      sh("veritysetup", ["verify", rootfs, hash, rootHash.replace(/^./, (c) => (c === "0" ? "1" : "0"))]),
    ).toThrow();

    // The rootfs: read-only ext4, agent and module installed, /boot emptied, fstab on our device.
    expect(sh("dumpe2fs", ["-h", rootfs])).toMatch(/features:.*read-only/);
    expect(debugfsCat(rootfs, "/etc/fstab")).toContain("/dev/mapper/rootfs / auto defaults 0 0");
    const installed = join(dir, "installed-agent");
    sh("debugfs", ["-R", `dump /usr/bin/cryptpilot-fde ${installed}`, rootfs]);
    // A boolean, not the bytes: a mismatch must not print an executable.
    expect(readFileSync(installed).equals(readFileSync("/bin/true"))).toBe(true);
    expect(debugfsCat(rootfs, "/usr/lib/dracut/modules.d/91cryptpilot/module-setup.sh")).toContain("check()");
    expect(debugfsCat(rootfs, "/data/hello.txt")).toBe("hello from the guest\n");
    expect(debugfsCat(rootfs, "/etc/cryptpilot/volumes/scratch.toml")).toContain('volume = "scratch"');
    expect(sh("debugfs", ["-R", "ls -p /boot", rootfs])).not.toContain("vmlinuz");
  }, 120_000);

  test("a root with no free space still takes the agent: the work copy gets room, the output stays minimal", async () => {
    const full = buildSourceImage(join(dir, "src-full"), { fullRoot: true });
    const out = join(dir, "out-full.raw");
    // A large stand-in (4 MiB): the filled root cannot hold it, nor ext4's slack for it.
    const big = join(dir, "big-agent");
    writeFileSync(big, Buffer.concat([readFileSync("/bin/true"), Buffer.alloc(4 * 1024 * 1024, 1)]));
    sh("chmod", ["755", big]);
    await convertImage(out, { input: full, assets: assets(dir, big) });
    const parts = partitions(out);
    const { lvs } = readLvs(dir, out, parts[2]!);
    const rootfs = extract(out, lvs.rootfs!.offset, lvs.rootfs!.size, join(dir, "lv-rootfs-full"));
    const installed = join(dir, "installed-big-agent");
    sh("debugfs", ["-R", `dump /usr/bin/cryptpilot-fde ${installed}`, rootfs]);
    expect(readFileSync(installed).equals(readFileSync(big))).toBe(true);
    // shrinkRoot took the filesystem back to its minimum: the 64 MiB slack is not carried over.
    const info = sh("dumpe2fs", ["-h", rootfs]);
    const free = Number(/^Free blocks:\s*(\d+)/m.exec(info)![1]) * 4096;
    expect(free).toBeLessThan(32 * 1024 * 1024);
  }, 120_000);

  test("encrypted rootfs: LUKS2 with subsystem cryptpilot, decrypts to the verity-checked filesystem", async () => {
    const out = join(dir, "out-enc.qcow2");
    const key = new TextEncoder().encode("rootfs-test-key");
    await convertImage(out, { configDir: configDir(true), rootfsKey: key });
    expect(sh("qemu-img", ["info", "--output=json", out])).toContain('"format": "qcow2"');
    const raw = join(dir, "out-enc.raw");
    sh("qemu-img", ["convert", "-O", "raw", out, raw]);
    const parts = partitions(raw);
    const boot = extract(raw, parts[1]!.start, parts[1]!.size, join(dir, "boot2.ext4"));
    const rootHash = /root_hash = "([0-9a-f]{64})"/.exec(debugfsCat(boot, `/initrd.img-${KVER}`))![1]!;
    const { lvs } = readLvs(dir, raw, parts[2]!);
    const lv = extract(raw, lvs.rootfs!.offset, lvs.rootfs!.size, join(dir, "lv-rootfs-enc"));
    const dump = sh("cryptsetup", ["luksDump", lv]);
    expect(dump).toMatch(/Subsystem:\s+cryptpilot\n/);
    expect(dump).toMatch(/cipher: aes-xts-plain64/);
    expect(dump).toMatch(/sector: 4096 \[bytes\]/);
    // A 15-byte key is a passphrase: cryptsetup's argon2id, not the minimal pbkdf2 of random keys.
    expect(dump).toMatch(/PBKDF:\s+argon2id\n/);
    const offset = Number(/offset: (\d+) \[bytes\]/.exec(dump)![1]);
    const mk = sh(
      "cryptsetup",
      ["luksDump", "--batch-mode", "--dump-volume-key", "--key-file=-", lv],
      Buffer.from(key),
    );
    const hex = /MK dump:\s+([\s\S]+?)\n\S/.exec(`${mk}\nX`)![1]!.replace(/\s+/g, "");
    const hash = extract(raw, lvs.rootfs_hash!.offset, lvs.rootfs_hash!.size, join(dir, "lv-hash-enc"));
    const vdump = sh("veritysetup", ["dump", hash]);
    const blocks = Number(/Data blocks:\s+(\d+)/.exec(vdump)![1]);
    const salt = Buffer.from(/Salt:\s+([0-9a-f]+)/.exec(vdump)![1]!, "hex");
    const lvBytes = readFileSync(lv);
    const hashBytes = readFileSync(hash);
    for (const block of [0, 1, Math.floor(blocks / 2), blocks - 1]) {
      const plain = decryptSector(lvBytes, hex, offset, block);
      if (block === 0) expect(plain.readUInt16LE(0x438)).toBe(0xef53); // ext4 superblock magic
      // Every decrypted block's verity digest is in the hash tree's bottom level.
      const digest = new Bun.CryptoHasher("sha256").update(salt).update(plain).digest();
      expect(hashBytes.indexOf(digest)).toBeGreaterThan(0);
    }
    // The root hash in the initrd is the one of this tree: H(salt || top hash block), top level first.
    const top = hashBytes.subarray(4096, 8192);
    expect(new Bun.CryptoHasher("sha256").update(salt).update(top).digest("hex")).toBe(rootHash);
  }, 180_000);

  test("a source with a separate /boot partition: its kernels move to the new boot partition, GRUB follows", async () => {
    const src = buildSourceImage(join(dir, "src-sepboot"), { separateBoot: true });
    const out = join(dir, "out-sepboot.raw");
    await convertImage(out, { input: src });
    const parts = partitions(out);
    const boot = extract(out, parts[1]!.start, parts[1]!.size, join(dir, "boot-sep.ext4"));
    expect(debugfsCat(boot, `/initrd.img-${KVER}`)).toContain("fake-initrd");
    expect(debugfsCat(boot, "/grub/grub.cfg")).toContain("root=/dev/mapper/rootfs");
    const bootUuid = /UUID="([^"]+)"/.exec(sh("blkid", ["-p", boot]))![1]!;
    const espCfg = execFileSync("mtype", ["-i", `${out}@@${parts[0]!.start}`, "::/EFI/debian/grub.cfg"], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
    }).toString();
    expect(espCfg).toContain(`search.fs_uuid ${bootUuid} root`);
    expect(espCfg).not.toContain(BOOT_UUID);
  }, 120_000);

  test("--uki: [ESP with only EFI/BOOT/BOOTX64.EFI, PV], the UKI built by the guest's dracut --uefi", async () => {
    const out = join(dir, "out-uki.raw");
    await convertImage(out, { uki: true, ukiAppendCmdline: "console=ttyS0" });
    const parts = partitions(out);
    expect(parts.map((p) => p.name)).toEqual(["EFI System Partition", "cryptpilot"]);
    const env = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
    const listing = execFileSync("mdir", ["-i", `${out}@@${parts[0]!.start}`, "-/", "-b", "::/"], {
      env,
    }).toString();
    expect(listing.split("\n").filter((l) => /\.efi$/i.test(l.trim()))).toEqual(["::/EFI/BOOT/BOOTX64.EFI"]);
    const uki = execFileSync("mtype", ["-i", `${out}@@${parts[0]!.start}`, "::/EFI/BOOT/BOOTX64.EFI"], {
      env,
    }).toString();
    expect(uki).toContain("--uefi --uefi-stub");
    expect(uki).toContain(
      `--kernel-image /boot/vmlinuz-${KVER} --kernel-cmdline root=/dev/mapper/rootfs ro console=ttyS0 rd.lvm=0 rd.luks=0`,
    );
    expect(uki).toMatch(/root_hash = "[0-9a-f]{64}"/);
    expect(Object.keys(readLvs(dir, out, parts[1]!).lvs).sort()).toEqual(["rootfs", "rootfs_hash"]);
  }, 120_000);

  test("-d/--device converts in place; --wipe-freed-space zeroes the freed space, without it the old bytes stay", async () => {
    // Old data of the source disk where the PV's unallocated space (the future delta) will be.
    const stale = Buffer.from("STALE-PLAINTEXT-OF-THE-OLD-ROOT!".repeat(128));
    const staleAt = [300 * 1024 * 1024, 600 * 1024 * 1024];
    const has = (file: string, offset: number) => {
      const buf = Buffer.alloc(stale.length);
      const fd = openSync(file, "r");
      try {
        readSync(fd, buf, 0, buf.length, offset);
      } finally {
        closeSync(fd);
      }
      return buf.equals(stale);
    };
    const convertDevice = async (name: string, wipeFreedSpace: boolean) => {
      const copy = join(dir, name);
      sh("cp", ["--sparse=always", source, copy]);
      sh("truncate", ["-s", "700M", copy]);
      for (const at of staleAt)
        sh("dd", [`of=${copy}`, "bs=4096", `seek=${at / 4096}`, "conv=notrunc", "status=none"], stale);
      const loop = sh("losetup", ["--find", "--show", copy]).trim();
      try {
        await convertImage(loop, { input: loop, device: true, wipeFreedSpace });
      } finally {
        sh("losetup", ["-d", loop]);
      }
      const parts = partitions(copy);
      expect(parts.map((p) => p.name)).toEqual(["EFI System Partition", "boot", "cryptpilot"]);
      expect(parts[2]!.start + parts[2]!.size).toBe(699 * 1024 * 1024);
      const { lvs } = readLvs(dir, copy, parts[2]!);
      expect(Object.keys(lvs).sort()).toEqual(["rootfs", "rootfs_hash"]);
      // The stale data is in the PV's free space, after the last LV.
      const lvEnd = Math.max(...Object.values(lvs).map((lv) => lv.offset + lv.size));
      expect(staleAt.every((at) => at >= lvEnd && at < parts[2]!.start + parts[2]!.size)).toBe(true);
      return { copy, freeStart: lvEnd, pvEnd: parts[2]!.start + parts[2]!.size };
    };

    const kept = await convertDevice("device-kept.raw", false);
    expect(staleAt.every((at) => has(kept.copy, at))).toBe(true);

    const wiped = await convertDevice("device-wiped.raw", true);
    expect(staleAt.some((at) => has(wiped.copy, at))).toBe(false);
    // Every byte from the end of the last LV to the end of the PV is zero.
    const length = wiped.pvEnd - wiped.freeStart;
    sh("cmp", [`--bytes=${length}`, `--ignore-initial=${wiped.freeStart}:0`, wiped.copy, "/dev/zero"]);
  }, 240_000);

  test.skipIf(!hasSwtpm)(
    "--tpm2-enroll: a new key sealed to the TPM in its own keyslot + token; we and tpm2-tools unseal it, the passphrase stays",
    async () => {
      const tpm = await startSwtpm();
      try {
        const cfg = join(dir, "cfg-tpm2");
        sh("mkdir", ["-p", cfg]);
        writeFileSync(
          join(cfg, "fde.toml"),
          '[rootfs]\ndelta_location = "disk-persist"\n[rootfs.encrypt.tpm2]\npcrs = [7, 16]\n[delta]\n[delta.encrypt.otp]\n',
        );
        const passphrase = "rootfs-recovery";
        const out = join(dir, "out-tpm2.raw");
        await convertImage(out, {
          configDir: cfg,
          rootfsKey: new TextEncoder().encode(passphrase),
          tpm2Enroll: { tcti: tpm.tcti, policy: { bank: "sha256", pcrs: [7, 16] } },
        });
        const parts = partitions(out);
        const { lvs } = readLvs(dir, out, parts[2]!);
        const lv = extract(out, lvs.rootfs!.offset, lvs.rootfs!.size, join(dir, "lv-rootfs-tpm2"));

        // Keyslot 0: the passphrase (argon2id); keyslot 1: the sealed random key (pbkdf2); one token.
        const meta = JSON.parse(sh("cryptsetup", ["luksDump", "--dump-json-metadata", lv]));
        expect(Object.keys(meta.keyslots).sort()).toEqual(["0", "1"]);
        expect(meta.keyslots["0"].kdf.type).toBe("argon2id");
        expect(meta.keyslots["1"].kdf.type).toBe("pbkdf2");
        const tokens = await findTokens(lv);
        expect(tokens.map((t) => t.type)).toEqual(["cryptpilot-tpm2"]);
        const token = tokens[0]!.token as Record<string, unknown>;
        expect(token.keyslots).toEqual(["1"]);
        expect(token["tpm2-pcrs"]).toEqual([7, 16]);

        // (a) The provider the boot runs unseals the key from the header and names keyslot 1;
        // cryptsetup accepts that key for keyslot 1 (and the passphrase still opens keyslot 0).
        const provider = createTpm2(
          { type: "tpm2", pcrs: [7, 16], pcrBank: "sha256", tcti: tpm.tcti },
          { volume: "rootfs", configDir: cfg, device: lv, freshKey: "never" },
        );
        const key = Buffer.from(await provider.getKey());
        expect(key.length).toBe(32);
        expect(provider.keySlot?.()).toBe(1);
        const test = (slot: number, secret: Buffer | string) =>
          Bun.spawnSync(
            ["cryptsetup", "open", "--test-passphrase", "--key-slot", String(slot), "--key-file=-", lv],
            { stdin: Buffer.from(secret) },
          ).exitCode;
        expect(test(1, key)).toBe(0);
        expect(test(0, passphrase)).toBe(0);
        expect(test(0, key)).toBe(2);

        // (b) tpm2-tools unseals the same object with the same PCR policy.
        const { privateBlob, publicBlob } = splitBlob(sealedFromToken(token, lv).blob);
        const tools = join(dir, "tpm2-tools");
        sh("mkdir", ["-p", tools]);
        writeFileSync(join(tools, "obj.priv"), privateBlob);
        writeFileSync(join(tools, "obj.pub"), publicBlob);
        expect(toolsUnsealFiles(tpm, tools, "sha256:7,16").equals(key)).toBe(true);
      } finally {
        await tpm.stop();
      }
    },
    240_000,
  );

  test("the CLI refuses a missing key choice and a config/flag mismatch with one paragraph", () => {
    const main = join(import.meta.dir, "../../src/main.ts");
    // The CLI converting source to x.raw with config directory CONFIG and FLAGS.
    const convertWith = (config: string, ...flags: string[]) =>
      Bun.spawnSync(
        [
          process.execPath,
          main,
          "convert",
          "--in",
          source,
          "--out",
          join(dir, "x.raw"),
          "-c",
          config,
          ...flags,
        ],
        { stderr: "pipe" },
      );
    const noKey = convertWith(configDir(false));
    expect(noKey.exitCode).toBe(2);
    expect(noKey.stderr.toString()).toContain(
      "exactly one of --rootfs-key-file, --rootfs-passphrase, --rootfs-no-encryption",
    );
    const mismatch = convertWith(configDir(true), "--rootfs-no-encryption");
    expect(mismatch.exitCode).toBe(2);
    expect(mismatch.stderr.toString()).toContain("has [rootfs.encrypt] but --rootfs-no-encryption was given");
    const badVolume = join(dir, "cfg-bad-volume");
    sh("mkdir", ["-p", join(badVolume, "volumes")]);
    sh("cp", [join(configDir(false), "fde.toml"), badVolume]);
    writeFileSync(join(badVolume, "volumes", "data.toml"), 'volume = "data"\n[encrypt.otp]\n');
    const volume = convertWith(badVolume, "--rootfs-no-encryption");
    expect(volume.exitCode).toBe(2);
    expect(volume.stderr.toString()).toContain(join(badVolume, "volumes", "data.toml"));
    expect(volume.stderr.toString()).toContain("dev");
    const tpm2NoKey = convertWith(configDir(false), "--rootfs-no-encryption", "--tpm2-enroll");
    expect(tpm2NoKey.exitCode).toBe(2);
    expect(tpm2NoKey.stderr.toString()).toContain("--tpm2-enroll seals the rootfs key");
    writeFileSync(join(dir, "k"), "key");
    const tpm2Exec = convertWith(configDir(true), "--rootfs-key-file", join(dir, "k"), "--tpm2-enroll");
    expect(tpm2Exec.exitCode).toBe(2);
    expect(tpm2Exec.stderr.toString()).toContain("unlocks the rootfs with the exec provider");
    expect(tpm2Exec.stderr.toString()).toContain("[rootfs.encrypt.tpm2]");
    expect(existsSync(join(dir, "x.raw"))).toBe(false);
  });

  describe("the guest's architecture", () => {
    /** A binfmt_misc directory as the kernel shows it, with qemu-aarch64 as qemu-user-static registers it. */
    const binfmt = (name: string, entry?: string) => {
      const d = join(dir, name);
      sh("mkdir", ["-p", d]);
      writeFileSync(join(d, "status"), "enabled\n");
      if (entry !== undefined) writeFileSync(join(d, "qemu-aarch64"), entry);
      return d;
    };
    const QEMU_AARCH64 =
      "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c46\n";
    /** An x86-64 host that can run arm64 binaries in a chroot (whatever this host really is). */
    const emulatingHost = () => ({ arch: AMD64, binfmtDir: binfmt("binfmt-ok", QEMU_AARCH64) });
    let armSource: string;
    beforeAll(() => {
      armSource = buildSourceImage(join(dir, "src-arm64"), { guestArch: ARM64 });
    });
    const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

    test("an agent of another architecture is refused before anything is written, --in/--out and -d", async () => {
      const agent = { ...assets(dir), agentBinary: elfStandIn(dir, AMD64) };
      const out = join(dir, "out-mismatch.raw");
      const refused = async (p: Promise<void>) => {
        const err = (await p.catch((e: Error) => e)) as FdeError;
        expect(err).toBeInstanceOf(FdeError);
        expect(err.message).toContain("the guest image is arm64 (aarch64) (its /usr/lib/systemd/systemd)");
        expect(err.message).toContain(`this convert's agent ${agent.agentBinary} is amd64 (x86_64)`);
        expect(err.message).toContain("make deb ARCH=arm64");
        expect(err.message).toContain("make build ARCH=arm64");
      };
      await refused(convertImage(out, { input: armSource, assets: agent, host: emulatingHost() }));
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(false);
      const device = join(dir, "dev-mismatch.raw");
      sh("cp", ["--sparse=always", armSource, device]);
      const before = sha(device);
      await refused(
        convertImage(device, { input: device, device: true, assets: agent, host: emulatingHost() }),
      );
      expect(sha(device)).toBe(before);
    }, 120_000);

    test("a guest of another architecture than the host needs qemu-user in binfmt_misc", async () => {
      const agent = { ...assets(dir), agentBinary: elfStandIn(dir, ARM64) };
      const out = join(dir, "out-nobinfmt.raw");
      const err = (await convertImage(out, {
        input: armSource,
        assets: agent,
        host: { arch: AMD64, binfmtDir: binfmt("binfmt-none") },
      }).catch((e: Error) => e)) as FdeError;
      expect(err).toBeInstanceOf(FdeError);
      expect(err.message).toContain("the guest image is arm64 (aarch64) and this host amd64 (x86_64)");
      expect(err.message).toContain("qemu-aarch64 does not exist");
      expect(err.message).toContain("install qemu-user-static and binfmt-support");
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(false);
    }, 120_000);

    test("--uki for an arm64 guest: its stub, and the UKI at EFI/BOOT/BOOTAA64.EFI", async () => {
      const agent = { ...assets(dir), agentBinary: elfStandIn(dir, ARM64) };
      const out = join(dir, "out-uki-arm64.raw");
      const info = spyOn(log, "info");
      try {
        await convertImage(out, { input: armSource, assets: agent, uki: true, host: emulatingHost() });
        expect(info.mock.calls.map((c) => String(c[0]))).toContain(
          "  guest architecture: arm64 (aarch64) (its /usr/lib/systemd/systemd); its dracut runs under qemu-aarch64 (binfmt_misc)",
        );
      } finally {
        info.mockRestore();
      }
      const esp = partitions(out)[0]!;
      const mt = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
      const listing = execFileSync("mdir", ["-i", `${out}@@${esp.start}`, "-/", "-b", "::/"], {
        env: mt,
      }).toString();
      expect(listing.split("\n").filter((l) => /\.efi$/i.test(l.trim()))).toEqual([
        "::/EFI/BOOT/BOOTAA64.EFI",
      ]);
      const uki = execFileSync("mtype", ["-i", `${out}@@${esp.start}`, "::/EFI/BOOT/BOOTAA64.EFI"], {
        env: mt,
      });
      expect(uki.toString()).toContain("--uefi-stub /usr/lib/systemd/boot/efi/linuxaa64.efi.stub");
    }, 120_000);
  });

  test("a failure leaves no DST, no DST.partial, no mounts and no loop devices", async () => {
    const failing = buildSourceImage(join(dir, "src-fail"), { failDracut: true });
    const out = join(dir, "out-fail.raw");
    // A private TMPDIR: other converts (the VM harness) may be running on this host at the same time.
    const tmp = join(dir, "tmp-fail");
    sh("mkdir", ["-p", tmp]);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      await expect(convertImage(out, { input: failing })).rejects.toThrow(
        /rebuilding the guest's initrd.*dracut/s,
      );
    } finally {
      // Assigning undefined would set the string "undefined" and break every later mkdtemp.
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(false);
    expect(readFileSync("/proc/mounts", "utf8")).not.toContain(tmp);
    expect(sh("losetup", ["-a"])).not.toContain(tmp);
    expect(sh("ls", ["-A", tmp]).trim()).toBe("");
  }, 120_000);
});
