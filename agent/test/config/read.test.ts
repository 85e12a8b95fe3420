/**
 * config/read.ts readRegularText: the one strict UTF-8 read behind configuration files, the user-data
 * handoff and `config reference-value`; bytes that are not UTF-8 are a ConfigError naming the file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleReference } from "../../src/config/bundle-reference.ts";
import { readRegularText } from "../../src/config/read.ts";
import { readHandoff } from "../../src/config/sources/handoff.ts";
import { HANDOFF_FILE } from "../../src/config/sources/index.ts";
import { readToml } from "../../src/config/toml.ts";
import { ConfigError } from "../../src/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "cfg-read-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Latin-1 "café": 0xe9 alone is not UTF-8. */
const LATIN1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]);

async function refusal(run: () => Promise<unknown>): Promise<ConfigError> {
  const err = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe("readRegularText", () => {
  test("UTF-8 text as it is; a missing file is undefined", async () => {
    const file = join(dir, "ok.toml");
    writeFileSync(file, 'name = "café"\n');
    expect(await readRegularText(file, 1024, "configuration file")).toBe('name = "café"\n');
    expect(await readRegularText(join(dir, "absent"), 1024, "configuration file")).toBeUndefined();
  });

  test("not UTF-8: the same ConfigError, naming the file, from each of its three readers", async () => {
    const toml = join(dir, "fde.toml");
    writeFileSync(toml, LATIN1);
    const handoffDir = join(dir, "handoff");
    mkdirSync(handoffDir);
    writeFileSync(join(handoffDir, HANDOFF_FILE), LATIN1);
    const bundle = join(dir, "bundle.toml");
    writeFileSync(bundle, LATIN1);
    const cases: [string, () => Promise<unknown>, string][] = [
      [toml, () => readToml(toml), "configuration file"],
      [join(handoffDir, HANDOFF_FILE), () => readHandoff(handoffDir), "configuration bundle"],
      [bundle, () => bundleReference(bundle), "configuration bundle"],
    ];
    for (const [file, run, what] of cases) {
      const err = await refusal(run);
      expect(err.message).toBe(`${file} is not valid UTF-8 text; a ${what} is TOML, which must be UTF-8`);
    }
  });
});
