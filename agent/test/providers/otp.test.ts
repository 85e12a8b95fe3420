import { expect, test } from "bun:test";
import { createProvider } from "../../src/providers/index.ts";
import { create } from "../../src/providers/otp.ts";
import { describeProviderConformance } from "./conformance.ts";

const ctx = { volume: "scratch", configDir: "/etc/cryptpilot" };

describeProviderConformance("otp", () => ({ provider: () => create({ type: "otp" }, ctx) }));

test("otp keys are 64 bytes, temporary, and differ between calls", async () => {
  const provider = await createProvider({ type: "otp" }, ctx);
  expect(provider.temporary).toBe(true);
  const keys = await Promise.all(Array.from({ length: 16 }, () => provider.getKey()));
  for (const key of keys) expect(key.length).toBe(64);
  expect(new Set(keys.map((k) => Buffer.from(k).toString("hex"))).size).toBe(16);
});

test("providers not in this build fail with a clear KeyProviderError", async () => {
  // tpm2 is the last to land; once every provider exists this test has nothing left to check.
  const error = await createProvider({ type: "tpm2", pcrs: [7], pcrBank: "sha256" }, ctx).then(
    () => undefined,
    (err: Error) => err,
  );
  if (error) expect(error.message).toContain("not available in this build");
});
