/** The provider registries: table schemas (config/providers/index.ts) and runtime modules (providers/index.ts) agree. */
import { expect, test } from "bun:test";
import * as v from "valibot";
import { EncryptSchema, PROVIDER_TABLES, PROVIDER_TYPES } from "../../src/config/providers/index.ts";
import { PROVIDER_MODULES } from "../../src/providers/index.ts";

test("every table is registered under its own type, and every type has a runtime module", () => {
  for (const [type, table] of Object.entries(PROVIDER_TABLES))
    expect(table.type).toBe(type as typeof table.type);
  expect(Object.keys(PROVIDER_MODULES).sort()).toEqual([...PROVIDER_TYPES].sort());
});

test("an encrypt table named like an Object.prototype member is an unknown provider, not a crash", () => {
  for (const name of ["toString", "hasOwnProperty", "valueOf", "constructor"]) {
    const result = v.safeParse(EncryptSchema, JSON.parse(`{"${name}": {}}`));
    expect(result.success).toBe(false);
    const message = result.issues?.[0]?.message ?? "";
    // valibot's record drops "constructor" itself (no table left); the others reach the name check.
    expect(message).toMatch(/unknown key provider|needs one key provider table/);
  }
});
