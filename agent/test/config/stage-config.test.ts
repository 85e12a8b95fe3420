/**
 * The two boot stages' configuration (boot/index.ts loadStageConfig): the first stage reads and
 * measures user data once and hands the bundle on; the later stage uses the handoff and never
 * asks the source again; a refused bundle leaves no handoff, so both stages run the initrd's.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadStageConfig, type StageConfigDeps } from "../../src/boot/index.ts";
import { BUNDLE_HEADER } from "../../src/config/bundle.ts";
import type { LoadedConfig } from "../../src/config/index.ts";
import type { MeasureBundle } from "../../src/config/sources/index.ts";

const root = mkdtempSync(join(tmpdir(), "stage-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const configDir = join(root, "etc");
mkdirSync(configDir);
writeFileSync(join(configDir, "fde.toml"), '[rootfs]\n[delta.encrypt.exec]\ncommand = "initrd-key"\n');
writeFileSync(join(configDir, "global.toml"), '[boot]\non_failure = "reboot"\n');

const BUNDLE = `${BUNDLE_HEADER}\n[global.boot]\nverbose = false\n[fde.rootfs]\n[fde.delta.encrypt.exec]\ncommand = "user-data-key"\n`;
const command = (c: LoadedConfig) => (c.fde?.delta.encrypt as { command?: string } | undefined)?.command;

function deps(name: string, measure: MeasureBundle) {
  let reads = 0;
  const d: StageConfigDeps = {
    sources: async () => [
      {
        name: "test user data",
        read: async () => {
          reads++;
          return { text: BUNDLE };
        },
      },
    ],
    measure,
    handoffDir: join(root, name),
  };
  return { d, reads: () => reads };
}

describe("loadStageConfig", () => {
  test("measured user data: the first stage uses it, the later stage gets it from the handoff without reading again", async () => {
    const { d, reads } = deps("ok", async () => ({ register: "TPM PCR 23 (SHA-256)" }));
    const initrdGlobals: string[] = [];
    const first = await loadStageConfig(
      "initrd-fde-before-sysroot",
      configDir,
      (g) => initrdGlobals.push(g.boot.onFailure),
      d,
    );
    expect(command(first)).toBe("user-data-key");
    // While choosing, a failure follows the initrd's [boot] (here: reboot).
    expect(initrdGlobals).toEqual(["reboot"]);
    const later = await loadStageConfig("initrd-fde-after-sysroot", configDir, () => {}, d);
    expect(command(later)).toBe("user-data-key");
    expect(later.global.boot.onFailure).toBe("poweroff");
    expect(reads()).toBe(1);
  });

  test("measurement refused: both stages run the initrd's configuration", async () => {
    const { d } = deps("refused", async () => ({ refused: "no register" }));
    expect(command(await loadStageConfig("initrd-fde-before-sysroot", configDir, () => {}, d))).toBe(
      "initrd-key",
    );
    expect(command(await loadStageConfig("initrd-fde-after-sysroot", configDir, () => {}, d))).toBe(
      "initrd-key",
    );
  });
});
