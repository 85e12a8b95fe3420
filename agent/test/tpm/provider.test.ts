/**
 * The tpm2 key provider and `tpm2 enroll` on LUKS2 image files (no device-mapper needed) with a
 * real swtpm: the shared conformance suite, enrollment through the CLI with the key on stdin,
 * first-boot sealing of a fresh volume, and the PCR-change failure.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Tpm2Config } from "../../src/config/providers.ts";
import { KeyProviderError } from "../../src/errors.ts";
import { create } from "../../src/providers/tpm2.ts";
import { withTpm } from "../../src/tpm/esys.ts";
import { hasSwtpm, type Swtpm, startSwtpm } from "../../testkit/swtpm.ts";
import { describeProviderConformance } from "../providers/conformance.ts";

const hasCryptsetup = Bun.which("cryptsetup") !== null;
const enabled = hasSwtpm && hasCryptsetup;
if (!enabled) console.warn("skipping tpm2 provider tests: swtpm, tpm2-tools or cryptsetup not installed");

const MAIN = join(import.meta.dir, "../../src/main.ts");
const VOLUME_KEY = "tpm2-provider-volume-key-5f2c9a";
const RECOVERY = "recovery passphrase 1";

function sh(args: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(args, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin) });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A 20 MB LUKS2 image whose keyslot 0 takes `key` and keyslot 1 the recovery passphrase. */
function luksImage(dir: string, name: string, key: string): string {
  const file = join(dir, name);
  writeFileSync(file, Buffer.alloc(0));
  sh(["truncate", "-s", "20M", file]);
  const fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
  const f = sh(
    ["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", ...fast, "--key-file", "-", file],
    key,
  );
  if (f.code !== 0) throw new Error(f.stderr);
  writeFileSync(join(dir, "k"), key);
  const a = sh(["cryptsetup", "luksAddKey", ...fast, "--key-file", join(dir, "k"), file], RECOVERY);
  rmSync(join(dir, "k"));
  if (a.code !== 0) throw new Error(a.stderr);
  return file;
}

function tokens(file: string): Record<string, Record<string, unknown>> {
  const r = sh(["cryptsetup", "luksDump", "--dump-json-metadata", file]);
  return JSON.parse(r.stdout).tokens;
}

/** `cryptpilot-fde tpm2 enroll` from source, key on stdin. */
function enroll(tpm: Swtpm, args: string[], stdin: string) {
  const r = Bun.spawnSync([process.execPath, MAIN, "-c", "/nonexistent", "tpm2", "enroll", ...args], {
    stdin: Buffer.from(stdin),
    env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti },
  });
  return { code: r.exitCode, stderr: r.stderr.toString() };
}

let tpm: Swtpm;
let dir: string;
let enrolled: string;
let unenrolled: string;
const config = (extra: Partial<Tpm2Config> = {}): Tpm2Config => ({
  type: "tpm2",
  pcrs: [7, 16],
  pcrBank: "sha256",
  tcti: tpm.tcti,
  ...extra,
});

if (enabled) {
  beforeAll(async () => {
    tpm = await startSwtpm();
    dir = mkdtempSync(join(tmpdir(), "tpm2-provider-"));
    enrolled = luksImage(dir, "rootfs.img", VOLUME_KEY);
    unenrolled = luksImage(dir, "plain.img", VOLUME_KEY);
    const r = enroll(tpm, ["--volume", "rootfs", "--device", enrolled, "--pcrs", "7,16"], VOLUME_KEY);
    if (r.code !== 0) throw new Error(`enroll failed: ${r.stderr}`);
  });
  afterAll(async () => {
    await tpm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
}

if (enabled) {
  describeProviderConformance("tpm2", () => ({
    provider: () => create(config(), { volume: "rootfs", configDir: dir, device: enrolled }),
    failing: () => create(config(), { volume: "rootfs", configDir: dir, device: unenrolled }),
    expectedKey: new TextEncoder().encode(VOLUME_KEY),
    secrets: [VOLUME_KEY, RECOVERY],
  }));
}

describe.skipIf(!enabled)("tpm2 enroll + provider", () => {
  test("enroll stores one cryptpilot-tpm2 token linked to the keyslot the key opens", () => {
    const list = Object.values(tokens(enrolled));
    expect(list).toHaveLength(1);
    const t = list[0]!;
    expect(t.type).toBe("cryptpilot-tpm2");
    expect(t.keyslots).toEqual(["0"]);
    expect(t["tpm2-pcrs"]).toEqual([7, 16]);
    expect(t["tpm2-pcr-bank"]).toBe("sha256");
    expect(t["tpm2-pin"]).toBe(false);
    expect(JSON.stringify(t)).not.toContain(VOLUME_KEY);
  });

  test("enrolling again replaces the token; the recovery passphrase can be enrolled too", async () => {
    const copy = luksImage(dir, "again.img", VOLUME_KEY);
    expect(enroll(tpm, ["--volume", "delta", "--device", copy], VOLUME_KEY).code).toBe(0);
    const r = enroll(tpm, ["--volume", "delta", "--device", copy, "--pcrs", "16"], RECOVERY);
    expect(r.stderr).toContain("keyslot 1");
    const list = Object.values(tokens(copy));
    expect(list).toHaveLength(1);
    expect(list[0]!["tpm2-pcrs"]).toEqual([16]);
    const key = await create(config(), { volume: "delta", configDir: dir, device: copy }).getKey();
    expect(new TextDecoder().decode(key)).toBe(RECOVERY);
  });

  test("enroll refuses a key that does not open the volume, and stores nothing", () => {
    const copy = luksImage(dir, "wrong.img", VOLUME_KEY);
    const r = enroll(tpm, ["--volume", "rootfs", "--device", copy], "not the key");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the given key does not open");
    expect(tokens(copy)).toEqual({});
  });

  test("with a PIN from a file: the token says so and the provider needs the same PIN", async () => {
    const copy = luksImage(dir, "pin.img", VOLUME_KEY);
    writeFileSync(join(dir, "pin"), "2468\n");
    const r = enroll(
      tpm,
      ["--volume", "rootfs", "--device", copy, "--pin-file", join(dir, "pin")],
      VOLUME_KEY,
    );
    expect(r.code).toBe(0);
    expect(Object.values(tokens(copy))[0]!["tpm2-pin"]).toBe(true);
    const ctx = { volume: "rootfs", configDir: dir, device: copy };
    expect(new TextDecoder().decode(await create(config({ pin: "2468" }), ctx).getKey())).toBe(VOLUME_KEY);
    await expect(create(config({ pin: "1357" }), ctx).getKey()).rejects.toThrow(/rejected the PIN/);
  });

  test("a volume without a token fails with a hint to enroll", async () => {
    const err = await create(config(), { volume: "rootfs", configDir: dir, device: unenrolled })
      .getKey()
      .catch((e) => e);
    expect(err).toBeInstanceOf(KeyProviderError);
    expect(err.message).toContain("has no cryptpilot-tpm2 (or systemd-tpm2) token");
    expect(err.hint).toContain("cryptpilot-fde tpm2 enroll --volume rootfs");
  });

  test("a missing device, or a rootfs without a LUKS header, is an error (no key is made up)", async () => {
    const missing = await create(config(), {
      volume: "delta",
      configDir: dir,
      device: join(dir, "absent.img"),
    })
      .getKey()
      .catch((e) => e);
    expect(missing).toBeInstanceOf(KeyProviderError);
    expect(missing.message).toContain("absent.img does not exist");
    const blank = join(dir, "blank.img");
    sh(["truncate", "-s", "20M", blank]);
    const rootfs = await create(config(), { volume: "rootfs", configDir: dir, device: blank })
      .getKey()
      .catch((e) => e);
    expect(rootfs.message).toContain("blank.img is not a LUKS2 volume");
  });

  const fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--batch-mode"];
  /** What the boot code does to a delta it (re)initialises: luksFormat with the key, then afterFormat. */
  const format = (file: string, key: Uint8Array, subsystem = "cryptpilot-initializing") => {
    writeFileSync(join(dir, "fmt.key"), key);
    const args = ["cryptsetup", "luksFormat", "--type", "luks2", ...fast, "--subsystem", subsystem];
    expect(sh([...args, "--key-file", join(dir, "fmt.key"), file]).code).toBe(0);
    rmSync(join(dir, "fmt.key"));
  };

  test("first boot of a fresh delta: a new key is sealed, and stored after the boot code formats it", async () => {
    const fresh = join(dir, "delta.img");
    sh(["truncate", "-s", "20M", fresh]);
    const provider = create(config(), { volume: "delta", configDir: dir, device: fresh });
    const key = await provider.getKey();
    expect(key.length).toBe(32);
    expect(Buffer.from(await provider.getKey()).equals(Buffer.from(key))).toBe(true);
    format(fresh, key);
    expect(provider.keySlot?.()).toBeUndefined(); // a fresh key opens nothing yet
    await provider.afterFormat!(fresh);
    expect(Object.values(tokens(fresh))[0]!.type).toBe("cryptpilot-tpm2");
    // luksFormat put the key into keyslot 0: the token says so, and later boots open only that slot.
    expect(Object.values(tokens(fresh))[0]!.keyslots).toEqual(["0"]);
    const next = create(config(), { volume: "delta", configDir: dir, device: fresh });
    const again = await next.getKey();
    expect(Buffer.from(again).equals(Buffer.from(key))).toBe(true);
    expect(next.keySlot?.()).toBe(0);
    // delta_location = "disk": re-formatted every boot with the unsealed key; the token comes back.
    format(fresh, again);
    expect(tokens(fresh)).toEqual({});
    await next.afterFormat!(fresh);
    const third = await create(config(), { volume: "delta", configDir: dir, device: fresh }).getKey();
    expect(Buffer.from(third).equals(Buffer.from(key))).toBe(true);
  });

  test("an interrupted first boot (initializing header, no token) gets a new sealed key", async () => {
    const file = join(dir, "interrupted.img");
    sh(["truncate", "-s", "20M", file]);
    format(file, new TextEncoder().encode("lost key of the interrupted boot"));
    const provider = create(config(), { volume: "delta", configDir: dir, device: file });
    const key = await provider.getKey();
    expect(key.length).toBe(32);
    format(file, key);
    await provider.afterFormat!(file);
    const next = await create(config(), { volume: "delta", configDir: dir, device: file }).getKey();
    expect(Buffer.from(next).equals(Buffer.from(key))).toBe(true);
  });

  test.skipIf(!Bun.which("systemd-cryptenroll"))(
    "a volume enrolled with systemd-cryptenroll (PCR policy, no PIN) is unlocked through its token",
    async () => {
      const file = luksImage(dir, "systemd.img", VOLUME_KEY);
      const r = Bun.spawnSync(
        ["systemd-cryptenroll", `--tpm2-device=${tpm.tcti}`, "--tpm2-pcrs=7+16", file],
        { env: { ...process.env, PASSWORD: VOLUME_KEY } },
      );
      expect(r.exitCode).toBe(0);
      expect(Object.values(tokens(file)).map((t) => t.type)).toEqual(["systemd-tpm2"]);
      const key = await create(config(), { volume: "rootfs", configDir: dir, device: file }).getKey();
      writeFileSync(join(dir, "sd.key"), key);
      const open = sh([
        "cryptsetup",
        "open",
        "--test-passphrase",
        "-v",
        "--key-file",
        join(dir, "sd.key"),
        file,
      ]);
      rmSync(join(dir, "sd.key"));
      expect(open.stdout + open.stderr).toContain("Key slot 2 unlocked");
    },
  );

  // Last: it changes PCR 16 for the rest of this file.
  test("after a bound PCR is extended, getKey fails naming the PCR policy mismatch", async () => {
    await withTpm(tpm.tcti, (esys) => esys.pcrExtend(16, "sha256", new Uint8Array(32).fill(9)));
    const err = await create(config(), { volume: "rootfs", configDir: dir, device: enrolled })
      .getKey()
      .catch((e) => e);
    expect(err).toBeInstanceOf(KeyProviderError);
    expect(err.message).toContain("tpm2 key provider: volume rootfs");
    expect(err.message).toContain("TPM PCR policy mismatch");
    expect(err.message).toContain("PCR 16 is ");
    expect(err.hint).toContain("recovery passphrase");
    if (Bun.which("systemd-cryptenroll")) {
      const sd = await create(config(), {
        volume: "rootfs",
        configDir: dir,
        device: join(dir, "systemd.img"),
      })
        .getKey()
        .catch((e) => e);
      expect(sd.message).toContain("TPM PCR policy mismatch: the key is sealed to PCRs sha256:7,16");
      expect(sd.message).toContain("the token does not record the sealed values; now PCR 7 is");
    }
  });
});
