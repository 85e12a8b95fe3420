/**
 * Which configuration a boot uses (config/sources): measured user data, else the initrd's, with
 * every fail-closed branch; the handoff to the later stage; the measurement adapter.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleMeasurer } from "../../src/boot/measure-config.ts";
import { BUNDLE_HEADER, readBundle } from "../../src/config/bundle.ts";
import { DEFAULT_GLOBAL } from "../../src/config/fde.ts";
import type { LoadedConfig } from "../../src/config/index.ts";
import { parseConfigTexts } from "../../src/config/index.ts";
import {
  HANDOFF_FILE,
  type MeasureBundle,
  readHandoff,
  type SelectOptions,
  selectConfig,
  type UserDataSource,
  writeHandoff,
} from "../../src/config/sources/index.ts";
import { FdeError } from "../../src/errors.ts";
import type { AaelEvent } from "../../src/measure/index.ts";

const INITRD: LoadedConfig = parseConfigTexts(
  { fde: '[rootfs]\n[delta.encrypt.exec]\ncommand = "initrd-key"\n' },
  "initrd:/etc/cryptpilot",
);
const BUNDLE = `${BUNDLE_HEADER}\n[fde.rootfs]\ndelta_location = "ram"\n[fde.delta.encrypt.exec]\ncommand = "user-data-key"\n`;

const source = (read: UserDataSource["read"], name = "test user data"): UserDataSource => ({ name, read });
const text = (t: string) => source(async () => ({ text: t }));
const measured: MeasureBundle = async () => ({ register: "TPM PCR 23 (SHA-256)" });

async function select(o: Partial<SelectOptions>) {
  const lines: string[] = [];
  const measuredHashes: string[] = [];
  const measure = o.measure ?? measured;
  const selected = await selectConfig({
    initrd: INITRD,
    sources: [],
    warn: (l) => lines.push(`warn: ${l}`),
    info: (l) => lines.push(`info: ${l}`),
    ...o,
    measure: async (b) => {
      measuredHashes.push(b.sha384);
      return measure(b);
    },
  });
  return { selected, lines: lines.join("\n"), measuredHashes };
}

const command = (c: LoadedConfig) => (c.fde?.delta.encrypt as { command?: string } | undefined)?.command;

describe("selectConfig", () => {
  test("a valid bundle, measured: used, the hash that was measured is upstream's, the console says so", async () => {
    const { selected, lines, measuredHashes } = await select({ sources: [text(BUNDLE)] });
    expect(command(selected.config)).toBe("user-data-key");
    expect(selected.source).toBe("test user data");
    expect(measuredHashes).toEqual([readBundle("x", BUNDLE).sha384]);
    expect(selected.userData?.text).toBe(BUNDLE);
    expect(lines).toContain(
      `using the configuration bundle from test user data (sha384 ${measuredHashes[0]}`,
    );
  });

  test("no register: user data ignored, the reason on the console, the initrd's configuration used", async () => {
    const { selected, lines } = await select({
      sources: [text(BUNDLE)],
      measure: async () => ({ refused: "no TDX RTMR and no TPM on this machine" }),
    });
    expect(command(selected.config)).toBe("initrd-key");
    expect(selected.userData).toBeUndefined();
    expect(lines).toMatch(
      /warn: test user data: .* could not be measured \(no TDX RTMR and no TPM.*never used; using the initrd's configuration/,
    );
  });

  test("the extend fails (throws): the same, never an unmeasured configuration", async () => {
    const { selected, lines } = await select({
      sources: [text(BUNDLE)],
      measure: async () => {
        throw new FdeError("writing rtmr3:sha384: EIO");
      },
    });
    expect(command(selected.config)).toBe("initrd-key");
    expect(lines).toContain("writing rtmr3:sha384: EIO");
  });

  test("a malformed bundle: error naming the source, line and field; nothing measured; initrd used", async () => {
    const bad = `${BUNDLE_HEADER}\n[fde.rootfs]\ndelta_location = "tape"\n[fde.delta.encrypt.exec]\ncommand = "k"\n`;
    const { selected, lines, measuredHashes } = await select({ sources: [text(bad)] });
    expect(command(selected.config)).toBe("initrd-key");
    expect(measuredHashes).toEqual([]);
    expect(lines).toMatch(
      /warn: test user data holds a configuration bundle that is not valid: test user data line 3: fde\.rootfs\.delta_location/,
    );
  });

  test("a bundle without [fde] or with on_failure = shell is refused before it is measured", async () => {
    for (const t of [
      `${BUNDLE_HEADER}\n[global.boot]\nverbose = true\n`,
      `${BUNDLE}[global.boot]\non_failure = "shell"\n`,
    ]) {
      const { selected, lines, measuredHashes } = await select({ sources: [text(t)] });
      expect(command(selected.config)).toBe("initrd-key");
      expect(measuredHashes).toEqual([]);
      expect(lines).toMatch(
        /cannot turn FDE off|only the initrd's configuration can enable the emergency shell/,
      );
    }
  });

  test("a bundle cannot force TEE evidence the initrd's configuration does not force", async () => {
    const kbs = (tee?: string) =>
      `[fde.rootfs]\n[fde.delta.encrypt.kbs]\nurl = "http://kbs"\nresource_path = "default/key/delta"\n${tee ? `tee = "${tee}"\n` : ""}`;
    for (const tee of ["tpm", "sample"]) {
      const { selected, lines, measuredHashes } = await select({
        sources: [text(`${BUNDLE_HEADER}\n${kbs(tee)}`)],
      });
      expect(command(selected.config)).toBe("initrd-key");
      expect(measuredHashes).toEqual([]);
      expect(lines).toContain(`forces the kbs evidence tee = "${tee}"`);
    }
    // Left to detection: used (and measured).
    const detected = await select({ sources: [text(`${BUNDLE_HEADER}\n${kbs()}`)] });
    expect(detected.selected.source).toBe("test user data");
    expect(detected.measuredHashes.length).toBe(1);
    // The same TEE the measured initrd forces: used.
    const initrdTpm = parseConfigTexts(
      { fde: '[rootfs]\n[delta.encrypt.kbs]\nurl = "http://kbs"\nresource_path = "a/b/c"\ntee = "tpm"\n' },
      "initrd:/etc/cryptpilot",
    );
    const same = await select({ initrd: initrdTpm, sources: [text(`${BUNDLE_HEADER}\n${kbs("tpm")}`)] });
    expect(same.selected.source).toBe("test user data");
  });

  test("user data that is not a bundle, or none, or no service: initrd used without measuring", async () => {
    const { selected, lines, measuredHashes } = await select({
      sources: [source(async () => ({ absent: "no metadata service" })), text("#cloud-config\nusers: []\n")],
    });
    expect(command(selected.config)).toBe("initrd-key");
    expect(measuredHashes).toEqual([]);
    expect(lines).toContain("info: test user data: no metadata service");
    expect(lines).toContain("is not a cryptpilot configuration bundle");
  });

  test("a source that fails (service error) is reported and the initrd's configuration used", async () => {
    const { selected, lines } = await select({
      sources: [
        source(async () => {
          throw new FdeError("GET /latest/user-data: HTTP 500");
        }),
      ],
    });
    expect(command(selected.config)).toBe("initrd-key");
    expect(lines).toContain("warn: test user data could not be read: GET /latest/user-data: HTTP 500");
  });

  test("an initrd without fde.toml does not consult user data at all", async () => {
    let read = false;
    const { selected } = await select({
      initrd: { global: DEFAULT_GLOBAL },
      sources: [
        source(async () => {
          read = true;
          return { text: BUNDLE };
        }),
      ],
    });
    expect(read).toBe(false);
    expect(selected.config.fde).toBeUndefined();
  });
});

describe("handoff to the later stage", () => {
  const dir = mkdtempSync(join(tmpdir(), "handoff-test-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const handoff = join(dir, "run", "config");

  test("the measured bundle's bytes, root-only (0700 dir, 0600 file), read back with the same hash", async () => {
    await writeHandoff(BUNDLE, handoff);
    expect(statSync(handoff).mode & 0o777).toBe(0o700);
    expect(statSync(join(handoff, HANDOFF_FILE)).mode & 0o777).toBe(0o600);
    const back = await readHandoff(handoff);
    expect(back?.sha384).toBe(readBundle("x", BUNDLE).sha384);
    expect(back?.bundle.fde?.rootfs.deltaLocation).toBe("ram");
  });

  test("initrd chosen: an older handoff is removed, so the later stage reads the initrd's", async () => {
    await writeHandoff(BUNDLE, handoff);
    await writeHandoff(undefined, handoff);
    expect(await readHandoff(handoff)).toBeUndefined();
  });

  test("a handoff that is not a valid bundle is an error, not a silent fallback", async () => {
    await writeHandoff(BUNDLE, handoff);
    writeFileSync(join(handoff, HANDOFF_FILE), "garbage");
    await expect(readHandoff(handoff)).rejects.toThrow(/does not start with/);
  });
});

describe("bundleMeasurer", () => {
  const bundle = readBundle("x", `${BUNDLE}`.replace('command = "user-data-key"', 'command = "k"'));

  test("loads the TEE modules first, then extends AAEL load_config_untrusted <sha384>", async () => {
    const calls: string[] = [];
    const events: AaelEvent[] = [];
    const m = bundleMeasurer({
      loadTeeModules: async () => {
        calls.push("modules");
      },
      open: async (options) => {
        calls.push(`open ${JSON.stringify(options)}`);
        return { register: "TDX RTMR3", extend: async (e) => void events.push(e) };
      },
    });
    expect(await m(bundle)).toEqual({ register: "TDX RTMR3" });
    expect(calls).toEqual(["modules", "open {}"]);
    expect(events).toEqual([
      { domain: "cryptpilot.alibabacloud.com", operation: "load_config_untrusted", content: bundle.sha384 },
    ]);
  });

  test("no register: refused with the measurer's reason; the kbs provider's tee picks the register", async () => {
    const kbs = readBundle(
      "x",
      `${BUNDLE_HEADER}\n[fde.rootfs]\n[fde.delta.encrypt.kbs]\nkbs_url = "http://kbs"\nkey_uri = "kbs:///a/b/c"\ntee = "tpm"\n`,
    );
    let asked: unknown;
    const m = bundleMeasurer({
      loadTeeModules: async () => {},
      open: async (options) => {
        asked = options;
        return { unavailable: "no TPM at /dev/tpmrm0" };
      },
    });
    expect(await m(kbs)).toEqual({ refused: "no TPM at /dev/tpmrm0" });
    expect(asked).toEqual({ tee: "tpm" });
  });
});
