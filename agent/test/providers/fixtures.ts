/**
 * The conformance fixture of every registered provider (PROVIDER_TYPES), loaded lazily so a
 * provider's servers start only when its cases run. conformance.test.ts fails for a registered
 * provider that has no entry here; the type makes a missing entry a tsc error too.
 */
import type { ProviderType } from "../../src/config/providers/index.ts";
import type { ConformanceFixture } from "./conformance.ts";

export const CONFORMANCE_FIXTURES: Record<ProviderType, () => Promise<ConformanceFixture>> = {
  otp: async () => (await import("./fixtures/otp.ts")).fixture,
  exec: async () => (await import("./fixtures/exec.ts")).fixture,
  kbs: async () => (await import("./fixtures/kbs.ts")).fixture,
  kms: async () => (await import("./fixtures/kms.ts")).fixture,
  oidc: async () => (await import("./fixtures/oidc.ts")).fixture,
  tpm2: async () => (await import("./fixtures/tpm2.ts")).fixture,
};
