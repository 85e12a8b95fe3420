/** Locates the shared trustee fixtures; tests skip with a visible message when they are absent. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = join(import.meta.dir, "../../../../shared/fixtures/trustee");
export const haveFixtures = existsSync(FIXTURES);
if (!haveFixtures) console.warn(`skipping fixture-based attestation tests: ${FIXTURES} is missing`);

export function fixture(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, rel)));
}
