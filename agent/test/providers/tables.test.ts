/** The provider registries: table schemas (config/providers/index.ts) and runtime modules (providers/index.ts) agree. */
import { expect, test } from "bun:test";
import { PROVIDER_TABLES, PROVIDER_TYPES } from "../../src/config/providers/index.ts";
import { PROVIDER_MODULES } from "../../src/providers/index.ts";

test("every table is registered under its own type, and every type has a runtime module", () => {
  for (const [type, table] of Object.entries(PROVIDER_TABLES))
    expect(table.type).toBe(type as typeof table.type);
  expect(Object.keys(PROVIDER_MODULES).sort()).toEqual([...PROVIDER_TYPES].sort());
});
