/**
 * The tpm2 key provider and `tpm2 enroll` on LUKS2 image files (no device-mapper needed) with a
 * real swtpm: enrollment through the CLI with the key on stdin, the fresh-key contract (first-boot
 * sealing of a volume the caller formats, ProviderContext.freshKey), and the PCR-change failure.
 * The shared conformance suite runs from providers/conformance.test.ts (fixtures/tpm2.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Tpm2Config } from "../../src/config/providers/index.ts";
import { KeyProviderError } from "../../src/errors.ts";
import { create } from "../../src/providers/tpm2.ts";
import { withTpm } from "../../src/tpm/esys.ts";
import { type Swtpm, startSwtpm } from "../../testkit/swtpm.ts";
import {
  hasTools as enabled,
  enroll,
  luksImage,
  RECOVERY,
  sh,
  tokens,
  VOLUME_KEY,
} from "../providers/fixtures/tpm2.ts";

if (!enabled) console.warn("skipping tpm2 provider tests: swtpm, tpm2-tools or cryptsetup not installed");

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
    const key = await create(config(), {
      volume: "delta",
      freshKey: "allowed",
      configDir: dir,
      device: copy,
    }).getKey();
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
    const ctx = { volume: "rootfs", freshKey: "never", configDir: dir, device: copy } as const;
    expect(new TextDecoder().decode(await create(config({ pin: "2468" }), ctx).getKey())).toBe(VOLUME_KEY);
    await expect(create(config({ pin: "1357" }), ctx).getKey()).rejects.toThrow(/rejected the PIN/);
  });

  test("a volume without a token fails with a hint to enroll", async () => {
    const err = await create(config(), {
      volume: "rootfs",
      freshKey: "never",
      configDir: dir,
      device: unenrolled,
    })
      .getKey()
      .catch((e) => e);
    expect(err).toBeInstanceOf(KeyProviderError);
    expect(err.message).toContain("has no cryptpilot-tpm2 (or systemd-tpm2) token");
    expect(err.hint).toContain("cryptpilot-fde tpm2 enroll --volume rootfs");
  });

  test("a missing device, or a rootfs without a LUKS header, is an error (no key is made up)", async () => {
    const missing = await create(config(), {
      volume: "delta",
      freshKey: "allowed",
      configDir: dir,
      device: join(dir, "absent.img"),
    })
      .getKey()
      .catch((e) => e);
    expect(missing).toBeInstanceOf(KeyProviderError);
    expect(missing.message).toContain("absent.img does not exist");
    const blank = join(dir, "blank.img");
    sh(["truncate", "-s", "20M", blank]);
    const rootfs = await create(config(), {
      volume: "rootfs",
      freshKey: "never",
      configDir: dir,
      device: blank,
    })
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
    const provider = create(config(), {
      volume: "delta",
      freshKey: "allowed",
      configDir: dir,
      device: fresh,
    });
    const key = await provider.getKey();
    expect(key.length).toBe(32);
    expect(Buffer.from(await provider.getKey()).equals(Buffer.from(key))).toBe(true);
    format(fresh, key);
    expect(provider.keySlot?.()).toBeUndefined(); // a fresh key opens nothing yet
    await provider.afterFormat!(fresh);
    expect(Object.values(tokens(fresh))[0]!.type).toBe("cryptpilot-tpm2");
    // luksFormat put the key into keyslot 0: the token says so, and later boots open only that slot.
    expect(Object.values(tokens(fresh))[0]!.keyslots).toEqual(["0"]);
    const next = create(config(), { volume: "delta", freshKey: "allowed", configDir: dir, device: fresh });
    const again = await next.getKey();
    expect(Buffer.from(again).equals(Buffer.from(key))).toBe(true);
    expect(next.keySlot?.()).toBe(0);
    // delta_location = "disk": re-formatted every boot with the unsealed key; the token comes back.
    format(fresh, again);
    expect(tokens(fresh)).toEqual({});
    await next.afterFormat!(fresh);
    const third = await create(config(), {
      volume: "delta",
      freshKey: "allowed",
      configDir: dir,
      device: fresh,
    }).getKey();
    expect(Buffer.from(third).equals(Buffer.from(key))).toBe(true);
  });

  test("an interrupted first boot (initializing header, no token) gets a new sealed key", async () => {
    const file = join(dir, "interrupted.img");
    sh(["truncate", "-s", "20M", file]);
    format(file, new TextEncoder().encode("lost key of the interrupted boot"));
    const provider = create(config(), { volume: "delta", freshKey: "allowed", configDir: dir, device: file });
    const key = await provider.getKey();
    expect(key.length).toBe(32);
    format(file, key);
    await provider.afterFormat!(file);
    const next = await create(config(), {
      volume: "delta",
      freshKey: "allowed",
      configDir: dir,
      device: file,
    }).getKey();
    expect(Buffer.from(next).equals(Buffer.from(key))).toBe(true);
  });

  test("ProviderContext.freshKey, not the volume's name, decides whether a new key is made", async () => {
    const blank = join(dir, "fresh-never.img");
    sh(["truncate", "-s", "20M", blank]);
    // "never" (the caller formats nothing): a delta without a header gets no made-up key ...
    const never = create(config(), { volume: "delta", freshKey: "never", configDir: dir, device: blank });
    const refused = await never.getKey().catch((e) => e);
    expect(refused).toBeInstanceOf(KeyProviderError);
    expect(refused.message).toContain("fresh-never.img is not a LUKS2 volume");
    // ... nor does an interrupted format (initializing header, no token) get re-keyed ...
    const interrupted = join(dir, "interrupted-never.img");
    sh(["truncate", "-s", "20M", interrupted]);
    format(interrupted, new TextEncoder().encode("lost key of the interrupted boot"));
    const noToken = await create(config(), {
      volume: "delta",
      freshKey: "never",
      configDir: dir,
      device: interrupted,
    })
      .getKey()
      .catch((e) => e);
    expect(noToken.message).toContain("has no cryptpilot-tpm2 (or systemd-tpm2) token");
    // ... and afterFormat, which only a formatting caller may call, stores nothing.
    const stored = await never.afterFormat!(interrupted).catch((e) => e);
    expect(stored).toBeInstanceOf(KeyProviderError);
    expect(stored.message).toContain('freshKey "never"');
    expect(tokens(interrupted)).toEqual({});
    // "allowed": a new sealed key whatever the volume is called.
    const allowed = create(config(), {
      volume: "rootfs",
      freshKey: "allowed",
      configDir: dir,
      device: blank,
    });
    expect((await allowed.getKey()).length).toBe(32);
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
      const key = await create(config(), {
        volume: "rootfs",
        freshKey: "never",
        configDir: dir,
        device: file,
      }).getKey();
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
    const err = await create(config(), {
      volume: "rootfs",
      freshKey: "never",
      configDir: dir,
      device: enrolled,
    })
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
        freshKey: "never",
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
