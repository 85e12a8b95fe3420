/**
 * A swtpm and a scratch directory for one bun:test describe block (kept out of swtpm.ts, which
 * bench and vm-test import outside the test runner).
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Swtpm, startSwtpm } from "./swtpm.ts";

export interface SwtpmSuite {
  /** The TPM (TCP transport); set in beforeAll. */
  tpm: Swtpm;
  /** A fresh temp directory named after the prefix, for tpm2-tools' files; set in beforeAll. */
  dir: string;
}

/**
 * Registers a beforeAll that starts a swtpm (with an EK certificate when `ekCert`) and makes the
 * scratch directory, and an afterAll that stops and removes both. Call it first in the describe
 * block, so the block's own beforeAll already sees `tpm` and `dir`.
 */
export function swtpmForSuite(prefix: string, options: { ekCert?: boolean } = {}): SwtpmSuite {
  const suite = {} as SwtpmSuite;
  beforeAll(async () => {
    suite.tpm = await startSwtpm(options);
    suite.dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    await suite.tpm?.stop();
    if (suite.dir) rmSync(suite.dir, { recursive: true, force: true });
  });
  return suite;
}
