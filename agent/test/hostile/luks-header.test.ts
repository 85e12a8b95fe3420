/**
 * Issue #14 gap 2: a LUKS2 header on a disk the host owns is attacker input. Real headers written
 * by cryptsetup on plain files (no device-mapper here), then edited the way a host would (JSON
 * changed, both checksums recomputed, see luks-craft.ts): every header cryptpilot writes passes
 * the policy; every weakened one is refused naming the device and the field, within bounded time
 * and memory; and cryptsetup reads the checked private copy, not the device, so a header swapped
 * after the check is never used.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VolumeConfig } from "../../src/config/volume.ts";
import * as luks from "../../src/disk/luks.ts";
import {
  checkLuks2Metadata,
  LUKS2_TOKEN_MAX_BYTES,
  openChecked,
  readCheckedHeader,
  writeHeaderCopy,
} from "../../src/disk/luks2-header.ts";
import { FdeError } from "../../src/errors.ts";
import { findTokens } from "../../src/tpm/token.ts";
import { formatOptions, headerProfile } from "../../src/volume/ops.ts";
import {
  editJson,
  formatLuksFile,
  importToken,
  nullKeyslotAttack,
  readJson,
  writeJson,
} from "../../testkit/luks-craft.ts";
import { bounded } from "./limits.ts";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("luks-header hostile test skipped: cryptsetup needs root (its lock directory)");
const dir = mkdtempSync(join(tmpdir(), "luks-hostile-"));
const copies = join(dir, "run");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEY = new TextEncoder().encode("0123456789abcdef0123456789abcdef"); // 32 bytes: pbkdf2, 1000
const MiB = 1024 * 1024;
const PLAIN = { integrity: false };
const INTEG = { integrity: true };
/** Generous bounds for one crafted case on a loaded 2-core box. */
const LIMITS = { ms: 5000, mib: 200 };

let n = 0;
const fresh = (size = 24 * MiB) => {
  const file = join(dir, `v${n++}.img`);
  writeFileSync(file, "");
  truncateSync(file, size);
  return file;
};

/** What `luks.format` writes for the delta and for volume init (pbkdf2 for a 32-byte key). */
let formatted: string | undefined;
async function cryptpilotHeader(): Promise<string> {
  if (!formatted) {
    formatted = fresh();
    await luks.format(formatted, KEY, { subsystem: luks.SUBSYSTEM_READY });
  }
  const file = fresh();
  copyFileSync(formatted, file);
  return file;
}

/** luks.format's integrity header as cryptsetup writes it (it needs dm to format one itself). */
async function integrityHeader(): Promise<string> {
  const file = await cryptpilotHeader();
  editJson(file, (j) => {
    j.keyslots["0"].key_size = 96;
    // cryptsetup sizes the area for 96 key bytes x 4000 stripes, rounded up to 4 KiB.
    j.keyslots["0"].area.size = "385024";
    j.segments["0"].integrity = {
      type: "hmac(sha256)",
      journal_encryption: "none",
      journal_integrity: "none",
    };
  });
  return file;
}

/** Refused with an FdeError naming the device and matching `field`, within bounds. */
async function refused(file: string, profile: { integrity: boolean }, field: RegExp): Promise<string> {
  let err: unknown;
  await bounded(async () => {
    err = await readCheckedHeader(file, profile).then(
      () => undefined,
      (e) => e,
    );
  }, LIMITS);
  expect(err).toBeInstanceOf(FdeError);
  const message = (err as FdeError).message;
  expect(message).toContain(file);
  expect(message).toMatch(field);
  expect((err as FdeError).hint).toContain("never reformatted");
  return message;
}

/** cryptsetup --test-passphrase against a header file (works without dm). Returns its exit code. */
function testPassphrase(header: string, device: string, key: Uint8Array): number {
  return spawnSync(
    "cryptsetup",
    ["open", "--test-passphrase", "--disable-external-tokens", "--header", header, "--key-file=-", device],
    { input: key },
  ).status!;
}

describe.skipIf(!isRoot)("headers cryptpilot writes are accepted", () => {
  test("luks.format (delta, volume init without integrity): accepted, and the private copy opens with the key only", async () => {
    const file = await cryptpilotHeader();
    const checked = await bounded(() => readCheckedHeader(file, PLAIN), LIMITS);
    const copy = await writeHeaderCopy(file, checked, copies);
    expect(statSync(copy).mode & 0o777).toBe(0o600);
    expect(statSync(copies).mode & 0o777).toBe(0o700);
    expect(testPassphrase(copy, file, KEY)).toBe(0);
    expect(testPassphrase(copy, file, new TextEncoder().encode("wrong key, not the one"))).not.toBe(0);
    rmSync(copy);
  });

  test("volume init's format options (with and without integrity) pass that volume's own profile", async () => {
    const vol = (integrity: boolean) => ({ integrity }) as VolumeConfig;
    expect(headerProfile(vol(true))).toEqual(INTEG);
    expect(formatOptions(vol(true), luks.SUBSYSTEM_INITIALIZING, false).integrity).toBe(true);
    const file = fresh();
    await luks.format(file, KEY, formatOptions(vol(false), luks.SUBSYSTEM_INITIALIZING, true));
    await readCheckedHeader(file, headerProfile(vol(false)));
  });

  test("an integrity header (hmac(sha256), 768-bit volume key) passes when integrity is configured", async () => {
    await readCheckedHeader(await integrityHeader(), INTEG);
  });

  test("convert's offline rootfs encryption (luks.encryptOffline) is accepted", async () => {
    const file = fresh(48 * MiB);
    await luks.encryptOffline(file, KEY, 32 * MiB);
    const checked = await readCheckedHeader(file, PLAIN);
    const copy = await writeHeaderCopy(file, checked, copies);
    expect(testPassphrase(copy, file, KEY)).toBe(0);
    rmSync(copy);
  });

  test("a passphrase keyslot (argon2id) and a tpm2 token are accepted", async () => {
    const file = await cryptpilotHeader();
    const passphraseFile = join(dir, "passphrase");
    writeFileSync(passphraseFile, "a passphrase", { mode: 0o600 });
    execFileSync(
      "cryptsetup",
      [
        "luksAddKey",
        "-q",
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "32768",
        "--pbkdf-force-iterations",
        "4",
        "--key-file=-",
        file,
        passphraseFile,
      ],
      { input: KEY },
    );
    importToken(file, { type: "cryptpilot-tpm2", keyslots: ["1"], "tpm2-blob": "AAEC", "tpm2-pin": false });
    const json = (await readCheckedHeader(file, PLAIN)).copy.json as {
      keyslots: Record<string, { kdf: { type: string } }>;
    };
    expect(json.keyslots["1"]?.kdf.type).toBe("argon2id");
  });
});

describe.skipIf(!isRoot)("hostile headers are refused naming the field", () => {
  test("keyslot cipher_null (opens with any key, host-chosen volume key)", async () => {
    const file = await cryptpilotHeader();
    nullKeyslotAttack(file);
    const msg = await refused(
      file,
      PLAIN,
      /keyslot 0 uses cipher "cipher_null-ecb"; cryptpilot writes aes-xts-plain64/,
    );
    expect(msg).toContain("the header was replaced");
  });

  test("segment cipher_null and another segment cipher", async () => {
    for (const cipher of ["cipher_null-ecb", "serpent-xts-plain64", "aes-cbc-essiv:sha256"]) {
      const file = await cryptpilotHeader();
      editJson(file, (j) => {
        j.segments["0"].encryption = cipher;
      });
      await refused(file, PLAIN, new RegExp(`segment 0 uses cipher "${cipher.replace(/[()]/g, "\\$&")}"`));
    }
  });

  test("keyslot with another cipher (not null: a weaker or unexpected mode is refused too)", async () => {
    const file = await cryptpilotHeader();
    editJson(file, (j) => {
      j.keyslots["0"].area.encryption = "aes-ecb";
    });
    await refused(file, PLAIN, /keyslot 0 uses cipher "aes-ecb"/);
  });

  test("integrity missing when configured, and present when not", async () => {
    await refused(
      await cryptpilotHeader(),
      INTEG,
      /segment 0 has no integrity, but the configuration asks for hmac\(sha256\)/,
    );
    await refused(
      await integrityHeader(),
      PLAIN,
      /segment 0 has integrity .* the configuration has integrity off/,
    );
    const weak = await integrityHeader();
    editJson(weak, (j) => {
      j.segments["0"].integrity.type = "crc32c";
    });
    await refused(weak, INTEG, /segment 0 uses integrity "crc32c"/);
  });

  test("sector size, key size, a second segment, reencryption requirements", async () => {
    // [path in the JSON, value the host writes there, the refusal expected]
    const cases: [string[], unknown, RegExp][] = [
      [["segments", "0", "sector_size"], 512, /segment 0 has sector size 512/],
      [["keyslots", "0", "key_size"], 32, /keyslot 0 holds a 32-byte volume key/],
      [["segments", "1"], { type: "crypt", offset: "20971520" }, /"segments" has 2 entries/],
      [["config", "requirements"], { mandatory: ["online-reencrypt-v2"] }, /config requirements/],
      [["config", "flags"], ["allow-discards"], /config flags/],
      [["segments", "0", "flags"], ["backup-previous"], /segment 0 has flags/],
      [["keyslots", "0", "type"], "reencrypt", /keyslot 0 has type "reencrypt"/],
      [["keyslots", "0", "kdf", "hash"], "md5", /keyslot 0 kdf uses hash "md5"/],
      [["keyslots", "0", "af", "stripes"], 1, /keyslot 0 af/],
      [["digests", "0", "iterations"], 10, /digest 0 has 10 PBKDF2 iterations/],
      [["segments", "0", "surprise"], 1, /segment 0 has the field "surprise"/],
    ];
    for (const [path, value, field] of cases) {
      const file = await cryptpilotHeader();
      editJson(file, (j) => {
        const parent = path.slice(0, -1).reduce((o, k) => o[k], j);
        parent[path.at(-1)!] = value;
      });
      await refused(file, PLAIN, field);
    }
  });

  test("KDF costs that would hang or OOM the guest are refused before cryptsetup runs the KDF", async () => {
    /** cryptpilot's header with keyslot 0's KDF made argon2id of these costs (salt kept). */
    const argon2idHeader = async (costs: { time: number; memory: number; cpus: number }) => {
      const file = await cryptpilotHeader();
      editJson(file, (j) => {
        j.keyslots["0"].kdf = { type: "argon2id", ...costs, salt: j.keyslots["0"].kdf.salt };
      });
      return file;
    };
    const pb = await cryptpilotHeader();
    editJson(pb, (j) => {
      j.keyslots["0"].kdf.iterations = 4_000_000_000;
    });
    await refused(pb, PLAIN, /keyslot 0 kdf has 4000000000 PBKDF2 iterations/);
    for (const [field, value, re] of [
      ["memory", 4 * 1024 * 1024, /kdf memory 4194304 KiB/],
      ["time", 100000, /kdf costs 100000 passes over 32768 KiB/],
      ["time", 2, /kdf time 2 \(at least 4\)/],
      ["cpus", 64, /kdf cpus 64/],
    ] as const) {
      const file = await argon2idHeader({ time: 4, memory: 32768, cpus: 1, [field]: value });
      await refused(file, PLAIN, re);
    }
    // What cryptsetup's benchmark writes on a large machine (1 GiB, 4 threads) stays accepted.
    await readCheckedHeader(await argon2idHeader({ time: 8, memory: 1048576, cpus: 4 }), PLAIN);
  });

  test("a keyslot area or the data segment beyond the device or the keyslots area", async () => {
    const far = await cryptpilotHeader();
    editJson(far, (j) => {
      j.keyslots["0"].area.offset = String(1024 * MiB);
    });
    await refused(far, PLAIN, /keyslot 0 area \["1073741824", \+"258048"\) is not inside the keyslots area/);
    const short = await cryptpilotHeader();
    truncateSync(short, 16 * MiB); // the data segment starts at 16 MiB: nothing left for it
    await refused(
      short,
      PLAIN,
      /segment 0 offset "16777216" is not after the keyslots area .* inside the 16777216-byte device/,
    );
    const big = await cryptpilotHeader();
    editJson(big, (j) => {
      j.config.keyslots_size = String(1024 * MiB);
    });
    await refused(big, PLAIN, /config keyslots_size "1073741824"/);
  });

  test(`an oversized token (cryptsetup token import of ${LUKS2_TOKEN_MAX_BYTES / 1024}+ KiB) is refused`, async () => {
    const file = formatLuksFile(fresh(), KEY, {
      // the product's cipher and sizes, with room for a large token
      args: [
        "--cipher",
        "aes-xts-plain64",
        "--key-size",
        "512",
        "--sector-size",
        "4096",
        "--luks2-metadata-size",
        "256k",
      ],
    });
    await readCheckedHeader(file, PLAIN); // the larger metadata area alone is fine
    const token = {
      type: "cryptpilot-tpm2",
      keyslots: ["0"],
      "tpm2-blob": "A".repeat(LUKS2_TOKEN_MAX_BYTES),
    };
    importToken(file, token);
    await refused(
      file,
      PLAIN,
      new RegExp(`token 0 is \\d+ bytes of JSON \\(at most ${LUKS2_TOKEN_MAX_BYTES}\\)`),
    );
    // The tpm2 provider reads tokens itself (before the header check on a first-boot delta).
    await expect(findTokens(file)).rejects.toThrow(/LUKS2 token 0 is \d+ bytes of JSON/);
  });

  test("a 4 MiB metadata area of deeply nested JSON ends quickly with a clear error", async () => {
    const file = formatLuksFile(fresh(24 * MiB), KEY, {
      args: ["--luks2-metadata-size", "4m", "--luks2-keyslots-size", "8m"],
    });
    const depth = 2_000_000;
    writeJson(file, `${"[".repeat(depth)}${"]".repeat(depth)}`);
    let err: unknown;
    await bounded(async () => {
      err = await readCheckedHeader(file, PLAIN).catch((e) => e);
    }, LIMITS);
    expect(err).toBeInstanceOf(FdeError);
    expect((err as Error).message).toContain("JSON area is nested deeper than 32 levels");
  });
});

describe.skipIf(!isRoot)("cryptsetup reads the checked copy, not the device (TOCTOU)", () => {
  test("a header swapped on the device after the check does not reach cryptsetup", async () => {
    const file = await cryptpilotHeader();
    const copy = await writeHeaderCopy(file, await readCheckedHeader(file, PLAIN), copies);
    // The host now replaces the device's header with the attack.
    nullKeyslotAttack(file);
    expect(readJson(file).keyslots["0"].area.encryption).toBe("cipher_null-ecb");
    const dumped = JSON.parse(
      execFileSync("cryptsetup", ["luksDump", "--dump-json-metadata", copy]).toString(),
    );
    expect(dumped.keyslots["0"].area.encryption).toBe("aes-xts-plain64");
    expect(testPassphrase(copy, file, KEY)).toBe(0);
    rmSync(copy);
  });

  test("a damaged primary: the copy holds the checked secondary twice, so cryptsetup has no other choice", async () => {
    const file = await cryptpilotHeader();
    writeJson(file, { ...readJson(file), segments: { "0": { type: "crypt" } } }, "primary");
    const primary = Buffer.from([0xff]);
    const fd = require("node:fs").openSync(file, "r+");
    require("node:fs").writeSync(fd, primary, 0, 1, 4096 + 10); // checksum now wrong
    require("node:fs").closeSync(fd);
    const copy = await writeHeaderCopy(file, await readCheckedHeader(file, PLAIN), copies);
    const dump = spawnSync("cryptsetup", ["luksDump", "--debug", copy]);
    expect(dump.status).toBe(0);
    // What cryptsetup prints for the damaged original; the copy has two valid, identical copies.
    expect(dump.stdout.toString() + dump.stderr.toString()).not.toMatch(/checksum error|recovery/i);
    expect(testPassphrase(copy, file, KEY)).toBe(0);
    rmSync(copy);
  });

  test("openChecked refuses a hostile header without running cryptsetup, and leaves no copy behind", async () => {
    const file = await cryptpilotHeader();
    nullKeyslotAttack(file);
    const before = existsSync(copies) ? readdirSync(copies).length : 0;
    const err = await openChecked(file, "never-opened", KEY, { profile: PLAIN, dir: copies }).catch((e) => e);
    expect(err).toBeInstanceOf(FdeError);
    expect((err as Error).message).toContain('keyslot 0 uses cipher "cipher_null-ecb"');
    // A good header reaches cryptsetup (which fails here: no dm) through --header; the copy is removed.
    const good = await cryptpilotHeader();
    await openChecked(good, "never-opened", KEY, { profile: PLAIN, dir: copies }).catch(() => undefined);
    expect(readdirSync(copies).length).toBe(before);
  });
});

test("openArgs passes the checked copy with --header and keeps external token plugins off", () => {
  expect(luks.openArgs("/dev/x", "n", 1, "/run/cryptpilot/h")).toEqual([
    "open",
    "--type",
    "luks2",
    "--disable-external-tokens",
    "--header",
    "/run/cryptpilot/h",
    "--key-slot",
    "1",
    "--key-file=-",
    "/dev/x",
    "n",
  ]);
});

test("checkLuks2Metadata on non-objects names the field, whatever the JSON", () => {
  const opts = { device: "/dev/x", profile: PLAIN, hdrSize: 16384, deviceBytes: 64 * MiB };
  for (const json of [
    null,
    [],
    "x",
    { keyslots: [] },
    { config: { json_size: "12288", keyslots_size: "16744448" } },
  ]) {
    expect(() => checkLuks2Metadata(json, opts)).toThrow(FdeError);
  }
});
