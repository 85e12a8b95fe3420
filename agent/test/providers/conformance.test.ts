/**
 * The provider conformance suite (conformance.ts) for EVERY registered provider: the registry is
 * config/providers/index.ts PROVIDER_TYPES, the cases are fixtures.ts. A provider registered
 * without a fixture fails here, so a new provider cannot skip the contract.
 */
import { describe, expect, test } from "bun:test";
import { PROVIDER_TYPES } from "../../src/config/providers/index.ts";
import { describeProviderConformance } from "./conformance.ts";
import { CONFORMANCE_FIXTURES } from "./fixtures.ts";

test("every registered provider has a conformance fixture with at least one case", async () => {
  const fixtures = CONFORMANCE_FIXTURES as Partial<typeof CONFORMANCE_FIXTURES>;
  expect(PROVIDER_TYPES.filter((type) => fixtures[type] === undefined)).toEqual([]);
  for (const type of PROVIDER_TYPES) {
    expect(Object.keys((await CONFORMANCE_FIXTURES[type]()).cases).length).toBeGreaterThan(0);
  }
});

for (const type of PROVIDER_TYPES) {
  const load = (CONFORMANCE_FIXTURES as Partial<typeof CONFORMANCE_FIXTURES>)[type];
  if (!load) continue; // reported by the test above
  const fixture = await load();
  if (fixture.unavailable) {
    console.warn(`skipping the ${type} provider conformance cases: ${fixture.unavailable}`);
    describe.skip(`${type} provider conformance`, () => {});
    continue;
  }
  for (const [label, setup] of Object.entries(fixture.cases)) describeProviderConformance(type, setup, label);
}
