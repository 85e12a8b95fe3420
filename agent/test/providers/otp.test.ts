import { expect, test } from "bun:test";
import { createProvider } from "../../src/providers/index.ts";

const ctx = { volume: "scratch", configDir: "/etc/cryptpilot", freshKey: "allowed" } as const;

test("otp keys are 64 bytes, temporary, and differ between calls", async () => {
  const provider = await createProvider({ type: "otp" }, ctx);
  expect(provider.temporary).toBe(true);
  const keys = await Promise.all(Array.from({ length: 16 }, () => provider.getKey()));
  for (const key of keys) expect(key.length).toBe(64);
  expect(new Set(keys.map((k) => Buffer.from(k).toString("hex"))).size).toBe(16);
});
